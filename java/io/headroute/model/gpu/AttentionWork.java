package io.headroute.model.gpu;

/**
 * Query tiles an attention call (or a layer's calls together) ran against the tiles of its whole grid:
 * a gate that skips work on the device shows as {@code launchedTiles < gridTiles}.
 *
 * @param launchedTiles query tiles (kernel blocks with work) launched: a device work list's length, read
 *                      back from the device, or the whole grid when the call built none
 * @param gridTiles     B·H·ceil(L / Br) summed over the calls
 */
public record AttentionWork(long launchedTiles, long gridTiles) {
    /** No work: the start of a sum over calls. */
    public static final AttentionWork NONE = new AttentionWork(0, 0);

    /**
     * {@return the sum of this and {@code o}, component by component} (a layer's calls together).
     *
     * @param o the work to add
     */
    public AttentionWork plus(AttentionWork o) {
        return new AttentionWork(launchedTiles + o.launchedTiles, gridTiles + o.gridTiles);
    }

    /** {@return launched / grid tiles, in [0, 1]}; 0 for an empty grid. */
    public double fraction() {
        return gridTiles == 0 ? 0 : launchedTiles / (double) gridTiles;
    }
}
