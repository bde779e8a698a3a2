package dev.strata.compute.model;

import java.util.Objects;

/**
 * One step of many sequences for {@link Llama#execute}: the rows (tokens) of every sequence that advances this step,
 * grouped in segments of consecutive positions of one sequence, each with the block table of its KV in a
 * {@link KvBlockPool}. A prompt chunk is a segment of many rows, a decode token a segment of one.
 *
 * @param tokens   token ids, {@code tokens.length} rows (more entries are ignored beyond the segments' rows).
 * @param segments the sequences of the step, their rows in order and together covering {@code [0, rows)}.
 */
public record ForwardBatch(int[] tokens, Segment[] segments)
{
    /**
     * The rows of one sequence in a step.
     *
     * @param row0       first row of the batch.
     * @param rows       rows (tokens) of this sequence, at positions {@code startPos ..}.
     * @param startPos   position of the first row; positions before it are already in the blocks.
     * @param blockTable the sequence's KV blocks in position order, covering at least {@code startPos + rows}.
     * @param logits     whether the logits of the segment's last row are wanted.
     */
    public record Segment(int row0, int rows, int startPos, int[] blockTable, boolean logits)
    {
        public Segment
        {
            Objects.requireNonNull(blockTable, "blockTable");
            if (rows < 1 || startPos < 0 || row0 < 0)
            {
                throw new IllegalArgumentException("invalid segment row0=" + row0 + " rows=" + rows + " startPos=" +
                    startPos);
            }
        }

        /** Positions after this step. */
        public int endPos()
        {
            return startPos + rows;
        }
    }

    public ForwardBatch
    {
        Objects.requireNonNull(tokens, "tokens");
        Objects.requireNonNull(segments, "segments");
        int next = 0;
        for (final Segment s : segments)
        {
            if (s.row0 != next)
            {
                throw new IllegalArgumentException("segments must cover the rows in order: row " + next +
                    " expected, segment starts at " + s.row0);
            }
            next += s.rows;
        }
        if (next == 0 || next > tokens.length)
        {
            throw new IllegalArgumentException("segments cover " + next + " rows of " + tokens.length + " tokens");
        }
    }

    /** Rows of the step. */
    public int rows()
    {
        final Segment last = segments[segments.length - 1];
        return last.row0 + last.rows;
    }
}
