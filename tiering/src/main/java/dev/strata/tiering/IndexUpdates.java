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

    /** Updates of an index; one that fails (the index is full) is dropped: the index is derived, the tiers are not. */
    record Of(BlockIndex index) implements IndexUpdates
    {
        @Override
        public void stored(final BlockId id, final int bit)
        {
            guarded(() -> index.stored(id, bit));
        }

        @Override
        public void removed(final BlockId id, final int bit)
        {
            guarded(() -> index.removed(id, bit));
        }

        @Override
        public void accessed(final BlockId id)
        {
            guarded(() -> index.accessed(id));
        }

        private static void guarded(final Runnable update)
        {
            try
            {
                update.run();
            }
            catch (final RuntimeException ex)
            {
                System.getLogger(BlockIndex.class.getName()).log(System.Logger.Level.WARNING,
                    "block index update dropped: " + ex);
            }
        }
    }
}
