package dev.strata.prefetch;

/**
 * Predicts the units (layers, experts, ...) a compute node accesses next. Used twice: to choose what to prefetch
 * ({@link #predict}) and what to evict ({@link #distance}: the unit needed furthest in the future goes first,
 * which for a known order is Belady's optimal choice). Called from one thread.
 */
public interface Predictor
{
    /** Records an access (the trace a learned predictor learns from). */
    void observe(int unit);

    /**
     * Units expected after {@code current}, soonest first.
     *
     * @param current the unit being accessed now.
     * @param max     at most this many.
     */
    int[] predict(int current, int max);

    /**
     * Accesses from {@code current} until {@code unit} is expected again (1 = next); a large number when it is not
     * expected soon.
     */
    int distance(int current, int unit);
}
