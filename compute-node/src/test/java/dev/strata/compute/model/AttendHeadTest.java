package dev.strata.compute.model;

import dev.strata.compute.tensor.Exp;
import dev.strata.compute.tensor.MatOps;
import org.junit.jupiter.api.Test;

import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertEquals;

/**
 * {@link Llama#attendHead} and {@link Llama#attendGroup} against the per-position loops they replaced (kept here as
 * the reference): the same bits for every output, on {@link KvCache} pages, for positions within the first block,
 * on block and page boundaries and across several pages. Batch invariance and failover depend on these bits.
 */
class AttendHeadTest
{
    static void reference(final KvPages kv, final int l, final float[] q, final int qo, final int ko, final int pos,
        final int hs, final float scale, final float[] s, final float[] att)
    {
        float max = Float.NEGATIVE_INFINITY;
        for (int p = 0; p <= pos; p++)
        {
            final float score = MatOps.dot(q, qo, kv.keyPage(l, p), kv.offset(p) + ko, hs) * scale;
            s[p] = score;
            max = Math.max(max, score);
        }
        float sum = 0f;
        for (int p = 0; p <= pos; p++)
        {
            final float e = Exp.scalar(s[p] - max);
            s[p] = e;
            sum += e;
        }
        final float inv = 1f / sum;
        java.util.Arrays.fill(att, qo, qo + hs, 0f);
        for (int p = 0; p <= pos; p++)
        {
            MatOps.axpy(s[p] * inv, kv.valuePage(l, p), kv.offset(p) + ko, att, qo, hs);
        }
    }

    @Test
    void shouldGiveTheBitsOfThePerPositionLoops()
    {
        // heads of 64, four query heads per key-value head
        final ModelConfig config = new ModelConfig("llama", 512, 2, 8, 2, 64, 96, 32, 1024, 1e-5f, 10000f, 64,
            ModelConfig.RopeStyle.NORMAL, false, 0, 0);
        final int group = config.heads() / config.kvHeads();
        final int hs = config.headSize();
        final int kvDim = config.kvDim();
        final KvCache kv = new KvCache(config, 1024);
        kv.ensureCapacity(1024);
        final Random r = new Random(4);
        for (int l = 0; l < 2; l++)
        {
            for (int p = 0; p < 1024; p++)
            {
                for (int i = 0; i < kvDim; i++)
                {
                    kv.keyPage(l, p)[kv.offset(p) + i] = (float)(r.nextGaussian() * Math.pow(4, r.nextInt(4) - 2));
                    kv.valuePage(l, p)[kv.offset(p) + i] = (float)r.nextGaussian();
                }
            }
        }
        final float[] q = new float[config.qDim() * 2];
        for (int i = 0; i < q.length; i++)
        {
            q[i] = (float)r.nextGaussian();
        }
        final float scale = (float)(1.0 / Math.sqrt(hs));
        for (final int pos : new int[] {0, 1, 14, 15, 16, 17, 63, 64, 65, 100, 254, 255, 256, 257, 300, 511, 700,
            1023})
        {
            final float[] want = new float[q.length];
            final float[] alone = new float[q.length];
            final float[] grouped = new float[q.length];
            for (int h = 0; h < config.heads(); h++)
            {
                final int qo = config.qDim() + h * hs;
                final int ko = (h / group) * hs;
                reference(kv, 1, q, qo, ko, pos, hs, scale, new float[pos + 1], want);
                Llama.attendHead(kv, 1, q, qo, ko, pos, hs, scale, new float[pos + 1], alone);
            }
            for (int kvh = 0; kvh < config.kvHeads(); kvh++)
            {
                Llama.attendGroup(kv, 1, q, config.qDim() + kvh * group * hs, group, kvh * hs, pos, hs, scale,
                    new float[group * (pos + 1)], grouped);
            }
            for (int i = config.qDim(); i < 2 * config.qDim(); i++)
            {
                assertEquals(Float.floatToRawIntBits(want[i]), Float.floatToRawIntBits(alone[i]),
                    "one head: position " + pos + " head " + (i - config.qDim()) / hs);
                assertEquals(Float.floatToRawIntBits(want[i]), Float.floatToRawIntBits(grouped[i]),
                    "grouped: position " + pos + " head " + (i - config.qDim()) / hs);
            }
        }
    }
}
