package dev.strata.tiering;

import dev.strata.transport.BlockId;

/** What the store tells the index; a store without an index tells nothing. */
interface IndexUpdates
{
    IndexUpdates NONE = new IndexUpdates()
    {
    };

    default void stored(final BlockId id, final int bit)
    {
    }

    default void removed(final BlockId id, final int bit)
    {
    }

    default void accessed(final BlockId id)
    {
    }

    record Of(BlockIndex index) implements IndexUpdates
    {
        @Override
        public void stored(final BlockId id, final int bit)
        {
            index.stored(id, bit);
        }

        @Override
        public void removed(final BlockId id, final int bit)
        {
            index.removed(id, bit);
        }

        @Override
        public void accessed(final BlockId id)
        {
            index.accessed(id);
        }
    }
}
