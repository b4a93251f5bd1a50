package io.headroute.engine;

import io.headroute.tensor.DType;

/**
 * What one attention run did, measured, not assumed.
 *
 * @param engine           the engine that ran ("cpu", "cuda")
 * @param algorithm        the algorithm actually used (never AUTO)
 * @param elapsedNanos     wall time of the computation, inputs already in place (the CPU engine's flash and sparse
 *                         calls that read K and V tile by tile, without a repack, include that reading)
 * @param workspaceBytes   peak scratch memory the algorithm allocated beyond inputs and outputs
 * @param queryTiles       query tiles executed (gate-skipped rows excluded)
 * @param keyTilesVisited  (query tile, key tile) pairs computed; −1 for an algorithm without tiles (the GPU's
 *                         materialized path: cuBLAS GEMMs over whole score rows)
 * @param keyTilesSkipped  (query tile, key tile) pairs skipped because the pattern excludes them; −1 likewise
 * @param rowsSkipped      query rows skipped because their gate is zero
 * @param peakDeviceBytes  peak device memory headroute held during the call (inputs, outputs and
 *                         workspace, from the pool's accounting), or −1 on the CPU
 * @param scoreDType       the dtype the L × S scores were stored in (materialized), or null when the
 *                         algorithm never stores them (flash, sparse: fp32 in registers or on the stack)
 */
public record ExecutionStats(String engine, Algorithm algorithm, long elapsedNanos, long workspaceBytes, long queryTiles,
        long keyTilesVisited, long keyTilesSkipped, long rowsSkipped, long peakDeviceBytes, DType scoreDType) {

    /**
     * Statistics of an algorithm that stores no score matrix ({@code scoreDType} null).
     *
     * @param engine          the engine that ran
     * @param algorithm       the algorithm actually used
     * @param elapsedNanos    wall time of the computation, in nanoseconds
     * @param workspaceBytes  peak scratch memory beyond inputs and outputs, in bytes
     * @param queryTiles      query tiles executed
     * @param keyTilesVisited (query tile, key tile) pairs computed, or −1
     * @param keyTilesSkipped (query tile, key tile) pairs the pattern excluded, or −1
     * @param rowsSkipped     query rows skipped for a zero gate
     * @param peakDeviceBytes peak device memory held during the call, in bytes, or −1 on the CPU
     */
    public ExecutionStats(String engine, Algorithm algorithm, long elapsedNanos, long workspaceBytes, long queryTiles,
            long keyTilesVisited, long keyTilesSkipped, long rowsSkipped, long peakDeviceBytes) {
        this(engine, algorithm, elapsedNanos, workspaceBytes, queryTiles, keyTilesVisited, keyTilesSkipped, rowsSkipped,
                peakDeviceBytes, null);
    }
}
