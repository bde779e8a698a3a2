package dev.strata.compute.sampling;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTimeoutPreemptively;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Duration;
import java.util.Arrays;
import java.util.Comparator;
import java.util.HashSet;
import java.util.Random;
import java.util.Set;
import java.util.stream.IntStream;
import org.junit.jupiter.api.Test;

/**
 * Expectations are computed independently here (double-precision softmax, full sorts), not by the code under test.
 */
class SamplerTest
{
    private static final float[] SMALL = {1.0f, 2.0f, 0.5f, 3.0f, -1.0f, 0.0f};

    // ---------------------------------------------------------------- greedy

    @Test
    void greedyReturnsTheArgmax()
    {
        final Random rnd = new Random(1);
        final Sampler sampler = Sampler.create(SamplerConfig.greedy());
        for (int trial = 0; trial < 50; trial++)
        {
            final float[] logits = gaussian(rnd, 1000, 3.0);
            int expected = 0;
            for (int i = 1; i < logits.length; i++)
            {
                if (logits[i] > logits[expected])
                {
                    expected = i;
                }
            }
            assertEquals(expected, sampler.sample(logits));
        }
    }

    @Test
    void greedyBreaksTiesByLowestId()
    {
        final Sampler sampler = Sampler.create(SamplerConfig.greedy());
        assertEquals(1, sampler.sample(new float[]{1.0f, 3.0f, 3.0f, 2.0f}));
        assertEquals(2, sampler.sample(new float[]{Float.NaN, Float.NEGATIVE_INFINITY, 0.5f, 0.5f}));
    }

    @Test
    void zeroTemperatureIsGreedyWhateverTheOtherSettings()
    {
        final Sampler sampler = Sampler.create(new SamplerConfig(0.0f, 2, 0.1f, 0.9f, 1.0f, 64, 99L));
        assertEquals(3, sampler.sample(SMALL.clone()));
        assertEquals(3, sampler.sample(SMALL.clone()));
    }

    // ---------------------------------------------------------------- distribution

    @Test
    void frequenciesMatchTheSoftmaxAtTheTemperature()
    {
        for (final float t : new float[]{0.5f, 1.0f, 2.0f})
        {
            final Sampler sampler = Sampler.create(pure(t, 11L));
            assertFrequencies(sampler, SMALL, softmax(SMALL, t), 100_000);
        }
    }

    @Test
    void frequenciesMatchTheSoftmaxForRandomLogits()
    {
        final Random rnd = new Random(2);
        for (int trial = 0; trial < 5; trial++)
        {
            final float[] logits = gaussian(rnd, 8, 1.5);
            final float t = 0.3f + 1.7f * rnd.nextFloat();
            assertFrequencies(Sampler.create(pure(t, trial)), logits, softmax(logits, t), 60_000);
        }
    }

    // ---------------------------------------------------------------- top-k

    @Test
    void topKNeverReturnsATokenOutsideTheKLargest()
    {
        final Random rnd = new Random(3);
        final Sampler sampler = Sampler.create(new SamplerConfig(1.5f, 10, 1.0f, 0.0f, 1.0f, 0, 5L));
        for (int trial = 0; trial < 50; trial++)
        {
            final float[] logits = gaussian(rnd, 2000, 2.0);
            final Set<Integer> allowed = new HashSet<>();
            for (int i = 0; i < 10; i++)
            {
                allowed.add(descending(logits)[i]);
            }
            for (int draw = 0; draw < 400; draw++)
            {
                final int token = sampler.sample(logits.clone());
                assertTrue(allowed.contains(token), "token " + token + " is not among the 10 largest");
            }
        }
    }

    @Test
    void topKRenormalisesOverTheKept()
    {
        final Random rnd = new Random(4);
        final float[] logits = gaussian(rnd, 50, 1.0);
        final int[] order = descending(logits);
        final double[] expected = new double[logits.length];
        final double[] kept = softmax(new float[]{
            logits[order[0]], logits[order[1]], logits[order[2]], logits[order[3]], logits[order[4]]}, 1.0f);
        for (int i = 0; i < 5; i++)
        {
            expected[order[i]] = kept[i];
        }
        assertFrequencies(Sampler.create(new SamplerConfig(1.0f, 5, 1.0f, 0.0f, 1.0f, 0, 6L)), logits, expected,
            100_000);
    }

    @Test
    void topKAtLeastTheVocabularyIsNoFilter()
    {
        final Sampler sampler = Sampler.create(new SamplerConfig(1.0f, 100, 1.0f, 0.0f, 1.0f, 0, 7L));
        assertFrequencies(sampler, SMALL, softmax(SMALL, 1.0f), 60_000);
    }

    // ---------------------------------------------------------------- top-p

    @Test
    void topPNeverReturnsATokenOutsideTheNucleus()
    {
        final Random rnd = new Random(8);
        for (final float p : new float[]{0.3f, 0.6f, 0.9f})
        {
            for (final float t : new float[]{1.0f, 2.5f})
            {
                final Sampler sampler = Sampler.create(new SamplerConfig(t, 0, p, 0.0f, 1.0f, 0, 9L));
                for (int trial = 0; trial < 10; trial++)
                {
                    final float[] logits = gaussian(rnd, 300, 2.0);
                    final Set<Integer> nucleus = nucleus(logits, p);
                    for (int draw = 0; draw < 300; draw++)
                    {
                        final int token = sampler.sample(logits.clone());
                        assertTrue(nucleus.contains(token),
                            "token " + token + " outside the top-p " + p + " nucleus " + nucleus);
                    }
                }
            }
        }
    }

    @Test
    void topPKeepsTheSmallestPrefixReachingP()
    {
        // p = 0.5, 0.3, 0.15, 0.05: a 0.75 nucleus is {0, 1}, renormalised to 0.625 / 0.375.
        final float[] logits = logs(0.5, 0.3, 0.15, 0.05);
        final Sampler sampler = Sampler.create(new SamplerConfig(1.0f, 0, 0.75f, 0.0f, 1.0f, 0, 10L));
        assertFrequencies(sampler, logits, new double[]{0.625, 0.375, 0.0, 0.0}, 60_000);
        final Sampler tiny = Sampler.create(new SamplerConfig(1.0f, 0, 0.01f, 0.0f, 1.0f, 0, 10L));
        for (int i = 0; i < 100; i++)
        {
            assertEquals(0, tiny.sample(logits.clone()));
        }
    }

    @Test
    void topPNucleusFarBelowTheMaximum()
    {
        // One token at logit 10 (mass e^10 ~ 22026) against 20000 tokens near 0 (mass ~ 20000): a 0.9 nucleus
        // reaches tokens more than 9 nats below the maximum.
        final Random rnd = new Random(16);
        final float[] logits = gaussian(rnd, 20_001, 0.2);
        logits[12_345] = 10.0f;
        final Set<Integer> nucleus = nucleus(logits, 0.9f);
        assertTrue(nucleus.size() > 10_000, "nucleus of " + nucleus.size());
        final Sampler sampler = Sampler.create(new SamplerConfig(1.0f, 0, 0.9f, 0.0f, 1.0f, 0, 17L));
        int top = 0;
        for (int draw = 0; draw < 600; draw++)
        {
            final int token = sampler.sample(logits.clone());
            assertTrue(nucleus.contains(token), "token " + token + " outside the nucleus");
            top += token == 12_345 ? 1 : 0;
        }
        // p(top | nucleus) ~ 22026 / (0.9 * 42430) ~ 0.58, so ~346 of 600 (sd ~12)
        assertTrue(top > 290 && top < 400, "top token drawn " + top + " times of 600");
    }

    @Test
    void topPAfterTopK()
    {
        // top-k 3 keeps 0.5, 0.3, 0.15 (mass 0.95): renormalised 0.526, 0.316, 0.158; a 0.8 nucleus is {0, 1}.
        final float[] logits = logs(0.5, 0.3, 0.15, 0.05);
        final Sampler sampler = Sampler.create(new SamplerConfig(1.0f, 3, 0.8f, 0.0f, 1.0f, 0, 12L));
        assertFrequencies(sampler, logits, new double[]{0.625, 0.375, 0.0, 0.0}, 60_000);
    }

    // ---------------------------------------------------------------- min-p

    @Test
    void minPNeverReturnsATokenBelowTheThreshold()
    {
        final Random rnd = new Random(13);
        for (final float minP : new float[]{0.05f, 0.2f, 0.6f})
        {
            final Sampler sampler = Sampler.create(new SamplerConfig(1.3f, 0, 1.0f, minP, 1.0f, 0, 14L));
            for (int trial = 0; trial < 10; trial++)
            {
                final float[] logits = gaussian(rnd, 500, 2.0);
                final double[] p = softmax(logits, 1.0f);
                final double pMax = Arrays.stream(p).max().orElseThrow();
                for (int draw = 0; draw < 300; draw++)
                {
                    final int token = sampler.sample(logits.clone());
                    assertTrue(p[token] >= minP * pMax * (1 - 1e-6),
                        "token " + token + " has p " + p[token] + " < " + minP + " * " + pMax);
                }
            }
        }
    }

    @Test
    void minPRenormalisesOverTheKept()
    {
        // p = 0.5, 0.3, 0.15, 0.05 with min-p 0.25: threshold 0.125 keeps {0, 1, 2}.
        final float[] logits = logs(0.5, 0.3, 0.15, 0.05);
        final Sampler sampler = Sampler.create(new SamplerConfig(1.0f, 0, 1.0f, 0.25f, 1.0f, 0, 15L));
        assertFrequencies(sampler, logits, new double[]{0.5 / 0.95, 0.3 / 0.95, 0.15 / 0.95, 0.0}, 60_000);
    }

    // ---------------------------------------------------------------- seeds

    @Test
    void theSameSeedReproducesTheSequenceAndOtherSeedsDiffer()
    {
        final SamplerConfig config = SamplerConfig.defaults(42L).withTemperature(1.2f).withRepeatPenalty(1.1f, 16);
        final int[] a = generate(Sampler.create(config));
        final int[] b = generate(Sampler.create(config));
        final int[] c = generate(Sampler.create(config.withSeed(43L)));
        assertArrayEquals(a, b);
        assertFalse(Arrays.equals(a, c), "seeds 42 and 43 gave the same 200 tokens");

        final Sampler reused = Sampler.create(config);
        generate(reused);
        reused.reset();
        assertArrayEquals(a, generate(reused));
    }

    // ---------------------------------------------------------------- repetition penalty

    @Test
    void repetitionPenaltyDividesPositiveLogits()
    {
        final Sampler sampler = Sampler.create(SamplerConfig.greedy().withRepeatPenalty(1.5f, 64));
        final float[] logits = {2.0f, 1.9f, -1.0f};
        assertEquals(0, sampler.sample(logits.clone()));
        sampler.accept(0);
        // 2.0 / 1.5 = 1.33 < 1.9
        assertEquals(1, sampler.sample(logits.clone()));
    }

    @Test
    void repetitionPenaltyMultipliesNegativeLogits()
    {
        final Sampler sampler = Sampler.create(SamplerConfig.greedy().withRepeatPenalty(1.5f, 64));
        final float[] logits = {-0.5f, -0.6f, -3.0f};
        sampler.accept(0);
        // -0.5 * 1.5 = -0.75 < -0.6 (dividing would have raised it to -0.33 and kept token 0)
        assertEquals(1, sampler.sample(logits.clone()));
    }

    @Test
    void repetitionPenaltyAppliesOncePerDistinctTokenAndModifiesInPlace()
    {
        final Sampler sampler = Sampler.create(SamplerConfig.greedy().withRepeatPenalty(1.5f, 64));
        sampler.accept(0);
        sampler.accept(0);
        sampler.accept(0);
        sampler.accept(7); // beyond this vocabulary: ignored
        final float[] logits = {2.0f, 1.2f};
        // once: 1.33 > 1.2; three times would be 0.59
        assertEquals(0, sampler.sample(logits));
        assertArrayEquals(new float[]{2.0f / 1.5f, 1.2f}, logits);
    }

    @Test
    void repetitionPenaltyOnlyLooksAtTheLastNTokens()
    {
        final Sampler sampler = Sampler.create(SamplerConfig.greedy().withRepeatPenalty(1.5f, 2));
        final float[] logits = {2.0f, 1.9f, -1.0f, -1.0f};
        sampler.accept(0);
        sampler.accept(2);
        assertEquals(1, sampler.sample(logits.clone()));
        sampler.accept(3); // token 0 leaves the window of 2
        assertEquals(0, sampler.sample(logits.clone()));
        sampler.reset();
        assertEquals(0, sampler.sample(logits.clone()));
    }

    @Test
    void repetitionPenaltyRunsBeforeTheStochasticChain()
    {
        // top-k 1 keeps only the (penalised) best token.
        final Sampler sampler = Sampler.create(new SamplerConfig(1.0f, 1, 1.0f, 0.0f, 1.5f, 64, 1L));
        final float[] logits = {2.0f, 1.9f, -1.0f};
        assertEquals(0, sampler.sample(logits.clone()));
        sampler.accept(0);
        assertEquals(1, sampler.sample(logits.clone()));
    }

    // ---------------------------------------------------------------- edge cases and scale

    @Test
    void maskedAndNanTokensAreNeverDrawn()
    {
        final float[] logits = {Float.NaN, 0.0f, Float.NEGATIVE_INFINITY, 0.0f, Float.NaN};
        for (final SamplerConfig config : new SamplerConfig[]{
            pure(1.0f, 1L), new SamplerConfig(1.0f, 3, 1.0f, 0.0f, 1.0f, 0, 1L),
            new SamplerConfig(1.0f, 0, 0.9f, 0.0f, 1.0f, 0, 1L), new SamplerConfig(1.0f, 0, 1.0f, 0.5f, 1.0f, 0, 1L)})
        {
            final Sampler sampler = Sampler.create(config);
            for (int i = 0; i < 1000; i++)
            {
                final int token = sampler.sample(logits.clone());
                assertTrue(token == 1 || token == 3, config + " drew " + token);
            }
        }
    }

    @Test
    void invalidInputsAreRejected()
    {
        final Sampler sampler = Sampler.create(SamplerConfig.defaults(1L));
        assertThrows(IllegalArgumentException.class, () -> sampler.sample(new float[0]));
        assertThrows(IllegalArgumentException.class, () -> Sampler.create(SamplerConfig.greedy()).sample(new float[0]));
        assertThrows(IllegalArgumentException.class, () -> sampler.accept(-1));
        final IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
            () -> sampler.sample(new float[]{Float.NEGATIVE_INFINITY, Float.NEGATIVE_INFINITY}));
        assertTrue(e.getMessage().contains("finite"), e.getMessage());
    }

    @Test
    void largeVocabularyWithAndWithoutTopK()
    {
        final Random rnd = new Random(20);
        final float[] logits = gaussian(rnd, 150_000, 2.0);
        final int[] order = descending(logits);
        final Set<Integer> top40 = new HashSet<>();
        for (int i = 0; i < 40; i++)
        {
            top40.add(order[i]);
        }
        final Set<Integer> nucleus = nucleus(logits, 0.5f);
        assertTimeoutPreemptively(Duration.ofSeconds(30), () ->
        {
            final Sampler withK = Sampler.create(SamplerConfig.defaults(3L));
            final Sampler withoutK = Sampler.create(SamplerConfig.defaults(3L).withTopK(0).withTopP(0.5f));
            for (int i = 0; i < 50; i++)
            {
                assertTrue(top40.contains(withK.sample(logits.clone())));
                assertTrue(nucleus.contains(withoutK.sample(logits.clone())));
            }
        });
        assertNotEquals(0, nucleus.size());
    }

    // ---------------------------------------------------------------- helpers

    /** Temperature only: no top-k, top-p, min-p or penalty. */
    private static SamplerConfig pure(final float temperature, final long seed)
    {
        return new SamplerConfig(temperature, 0, 1.0f, 0.0f, 1.0f, 0, seed);
    }

    private static void assertFrequencies(
        final Sampler sampler, final float[] logits, final double[] expected, final int draws)
    {
        final int[] counts = new int[logits.length];
        for (int i = 0; i < draws; i++)
        {
            counts[sampler.sample(logits.clone())]++;
        }
        for (int i = 0; i < logits.length; i++)
        {
            final double p = expected[i];
            final double observed = counts[i] / (double)draws;
            final double tolerance = 5.0 * Math.sqrt(p * (1.0 - p) / draws) + 1e-4;
            assertEquals(p, observed, tolerance, "token " + i + " of " + Arrays.toString(logits));
        }
    }

    private static double[] softmax(final float[] logits, final float temperature)
    {
        double max = Double.NEGATIVE_INFINITY;
        for (final float l : logits)
        {
            max = Math.max(max, l);
        }
        final double[] p = new double[logits.length];
        double sum = 0.0;
        for (int i = 0; i < logits.length; i++)
        {
            p[i] = Math.exp((logits[i] - max) / temperature);
            sum += p[i];
        }
        for (int i = 0; i < p.length; i++)
        {
            p[i] /= sum;
        }
        return p;
    }

    /** Token ids by descending logit. */
    private static int[] descending(final float[] logits)
    {
        return IntStream.range(0, logits.length).boxed()
            .sorted(Comparator.comparingDouble((Integer i) -> logits[i]).reversed())
            .mapToInt(Integer::intValue).toArray();
    }

    /** The smallest set of most likely tokens (temperature 1) whose probability reaches p. */
    private static Set<Integer> nucleus(final float[] logits, final float p)
    {
        final double[] probabilities = softmax(logits, 1.0f);
        final Set<Integer> set = new HashSet<>();
        double cumulative = 0.0;
        for (final int id : descending(logits))
        {
            set.add(id);
            cumulative += probabilities[id];
            if (cumulative >= p)
            {
                break;
            }
        }
        return set;
    }

    private static float[] logs(final double... probabilities)
    {
        final float[] logits = new float[probabilities.length];
        for (int i = 0; i < logits.length; i++)
        {
            logits[i] = (float)Math.log(probabilities[i]);
        }
        return logits;
    }

    private static float[] gaussian(final Random rnd, final int n, final double scale)
    {
        final float[] logits = new float[n];
        for (int i = 0; i < n; i++)
        {
            logits[i] = (float)(rnd.nextGaussian() * scale);
        }
        return logits;
    }

    /** 200 steps over varying logits, accepting each drawn token. */
    private static int[] generate(final Sampler sampler)
    {
        final Random rnd = new Random(77);
        final int[] tokens = new int[200];
        for (int i = 0; i < tokens.length; i++)
        {
            tokens[i] = sampler.sample(gaussian(rnd, 500, 1.0));
            sampler.accept(tokens[i]);
        }
        return tokens;
    }
}
