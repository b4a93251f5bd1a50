package io.headroute.analysis;

import io.headroute.tensor.AtomicFiles;
import java.awt.image.BufferedImage;
import java.io.IOException;
import java.nio.file.Path;
import javax.imageio.ImageIO;

/**
 * PNG heatmaps of head analysis: attention maps and the layers × heads importance grid. Pixels only (no
 * text), so they render the same with or without fonts; each cell is a square of {@code cell} pixels,
 * colored on a perceptually ordered dark-blue → green → yellow scale from the minimum to the maximum.
 */
public final class Heatmaps {
    /** Anchor colors of the scale, low to high (viridis-like). */
    private static final int[][] SCALE = {
        {68, 1, 84}, {59, 82, 139}, {33, 145, 140}, {94, 201, 98}, {253, 231, 37},
    };

    private Heatmaps() {}

    /**
     * The image of {@code values} (rows × cols, not ragged): cell (r, c) is a cell × cell square.
     *
     * @param values the grid, at least one cell, every value finite
     * @param cell   the side of each cell in pixels, positive
     * @return an RGB image of (cols · cell) × (rows · cell) pixels; equal values everywhere give the lowest color
     * @throws IllegalArgumentException for an empty or ragged grid, a non-finite value or a cell size below 1
     */
    public static BufferedImage render(double[][] values, int cell) {
        if (values.length == 0 || values[0].length == 0 || cell <= 0) {
            throw new IllegalArgumentException("heatmap: need at least one cell and a positive cell size");
        }
        int rows = values.length;
        int cols = values[0].length;
        double lo = Double.POSITIVE_INFINITY;
        double hi = Double.NEGATIVE_INFINITY;
        for (double[] row : values) {
            if (row.length != cols) {
                throw new IllegalArgumentException("heatmap: rows differ in length");
            }
            for (double v : row) {
                if (!Double.isFinite(v)) {
                    throw new IllegalArgumentException("heatmap: value " + v + " is not finite");
                }
                lo = Math.min(lo, v);
                hi = Math.max(hi, v);
            }
        }
        BufferedImage img = new BufferedImage(cols * cell, rows * cell, BufferedImage.TYPE_INT_RGB);
        for (int r = 0; r < rows; r++) {
            for (int c = 0; c < cols; c++) {
                int rgb = color(hi > lo ? (values[r][c] - lo) / (hi - lo) : 0);
                for (int y = r * cell; y < (r + 1) * cell; y++) {
                    for (int x = c * cell; x < (c + 1) * cell; x++) {
                        img.setRGB(x, y, rgb);
                    }
                }
            }
        }
        return img;
    }

    /**
     * Writes {@link #render} as a PNG, atomically.
     *
     * @param values the grid
     * @param cell   the side of each cell in pixels
     * @param target the PNG file to write
     * @throws io.headroute.tensor.TensorFileException when the file cannot be written
     */
    public static void write(double[][] values, int cell, Path target) {
        BufferedImage img = render(values, cell);
        AtomicFiles.write(target, out -> {
            if (!ImageIO.write(img, "png", out)) {
                throw new IOException("no PNG writer in this Java runtime");
            }
        });
    }

    /** The scale's color at t in [0, 1], as 0xRRGGBB. */
    static int color(double t) {
        double x = Math.max(0, Math.min(1, t)) * (SCALE.length - 1);
        int i = Math.min(SCALE.length - 2, (int) x);
        double f = x - i;
        int rgb = 0;
        for (int ch = 0; ch < 3; ch++) {
            int v = (int) Math.round(SCALE[i][ch] + f * (SCALE[i + 1][ch] - SCALE[i][ch]));
            rgb = (rgb << 8) | v;
        }
        return rgb;
    }
}
