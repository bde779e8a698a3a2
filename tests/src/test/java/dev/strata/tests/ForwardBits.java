package dev.strata.tests;

import dev.strata.compute.gguf.GgufFile;
import dev.strata.compute.model.GgufWeightSource;
import dev.strata.compute.model.KvCache;
import dev.strata.compute.model.Llama;
import dev.strata.compute.tensor.ThreadPool;

import java.nio.file.Path;
import java.util.Arrays;
import java.util.Random;
import java.util.zip.CRC32;

/**
 * Child program of {@link JitDeterminismProcessTest}: a greedy run on a model file (a batch prompt, then decode
 * steps), {@code rounds} times, printing a CRC of the bits of every logit of the last round. Run with C2 and
 * several rounds, the last round runs compiled code; run with C1 only, every Vector API operation takes its Java
 * fallback.
 */
public final class ForwardBits
{
    private ForwardBits()
    {
    }

    public static void main(final String[] args) throws Exception
    {
        final Path model = Path.of(args[0]);
        final int rounds = Integer.parseInt(args[1]);
        final int steps = 24;
        try (GgufFile f = GgufFile.open(model); GgufWeightSource w = new GgufWeightSource(f, false);
            ThreadPool pool = new ThreadPool(2))
        {
            final Llama llama = new Llama(w, pool, 64);
            llama.batchInvariant(true);
            final int vocab = llama.config().vocabSize();
            long crc = 0;
            for (int round = 0; round < rounds; round++)
            {
                final int[] tokens = Arrays.copyOf(new Random(1).ints(40, 3, vocab).toArray(), 40 + steps);
                final KvCache kv = new KvCache(llama.config(), 128);
                float[] logits = llama.forward(tokens, 0, 40, 0, kv);
                final CRC32 c = new CRC32();
                for (int s = 0; s < steps; s++)
                {
                    int best = 0;
                    for (int i = 0; i < logits.length; i++)
                    {
                        final int b = Float.floatToRawIntBits(logits[i]);
                        c.update(new byte[]{(byte)b, (byte)(b >> 8), (byte)(b >> 16), (byte)(b >> 24)});
                        best = logits[i] > logits[best] ? i : best;
                    }
                    tokens[40 + s] = best;
                    if (s < steps - 1)
                    {
                        logits = llama.forward(tokens, 40 + s, 1, 40 + s, kv);
                    }
                }
                crc = c.getValue();
            }
            System.out.println("logits-crc " + Long.toHexString(crc));
        }
    }
}
