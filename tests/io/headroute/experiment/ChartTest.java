package io.headroute.experiment;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;

import java.awt.image.BufferedImage;
import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.util.List;
import javax.imageio.ImageIO;
import org.junit.jupiter.api.Test;

class ChartTest {
    private static BufferedImage decode(Chart c) throws IOException {
        BufferedImage img = ImageIO.read(new ByteArrayInputStream(c.png()));
        assertNotNull(img);
        assertEquals(Chart.WIDTH, img.getWidth());
        assertEquals(Chart.HEIGHT, img.getHeight());
        return img;
    }

    @Test
    void degenerateDataStillDraws() throws IOException {
        decode(new Chart("empty", "x", "y", true, true, true));
        decode(new Chart("one point", "x", "y", true, true, true).add("a", List.of(new double[] {1024, 3})));
        decode(new Chart("flat", "x", "y", false, false, false).add("a", List.of(new double[] {0.5, 2}, new double[] {0.5, 2})));
        // Non-positive values cannot sit on a log axis and are left out, not drawn at -infinity.
        Chart c = new Chart("log", "x", "y", true, true, true).add("a", List.of(new double[] {0, 1}, new double[] {-1, 2}));
        assertEquals(true, c.isEmpty());
        decode(c);
    }

    @Test
    void seriesGetDistinctColours() throws IOException {
        Chart c = new Chart("t", "x", "y", true, true, true);
        for (int s = 0; s < 12; s++) {
            c.add("series " + s, List.of(new double[] {512, s + 1}, new double[] {4096, 10 * (s + 1)}));
        }
        BufferedImage img = decode(c);
        java.util.Set<Integer> colours = new java.util.HashSet<>();
        for (int y = 0; y < img.getHeight(); y++) {
            for (int x = 0; x < img.getWidth(); x++) {
                colours.add(img.getRGB(x, y) & 0xffffff);
            }
        }
        for (int rgb : new int[] {0x1f77b4, 0xd62728, 0x2ca02c, 0xff7f0e, 0x9467bd, 0x8c564b, 0xe377c2, 0x17becf}) {
            assertEquals(true, colours.contains(rgb), Integer.toHexString(rgb));
        }
    }

    /** A reference curve brings its values at the data's x into the y range and is drawn in its own grey. */
    @Test
    void referenceCurvesAreInViewAndDrawn() throws IOException {
        Chart c = new Chart("t", "x", "y", false, true, false)
                .add("a", List.of(new double[] {0.1, 3}, new double[] {0.5, 2}))
                .reference("1x", x -> 1.0).reference("ideal", x -> 1 / x).reference("nowhere", x -> Double.NaN);
        assertEquals(List.of("a", "1x", "ideal", "nowhere"), c.legend());
        double[] y = c.yRange();
        assertEquals(true, y[0] < 1 && y[1] > 10, java.util.Arrays.toString(y));
        Chart plain = new Chart("t", "x", "y", false, true, false)
                .add("a", List.of(new double[] {0.1, 3}, new double[] {0.5, 2}));
        assertEquals(0, greyPlotPixels(decode(plain)), "grey in a chart without references");
        assertEquals(true, greyPlotPixels(decode(c)) > 400, "the dashed references are missing");
        // Without data there is nothing to refer to: no range, nothing drawn but the empty frame.
        decode(new Chart("empty", "x", "y", false, true, false).reference("1x", x -> 1.0));
    }

    /** Pixels inside the plot's frame of a grey darker than the grid (the references' dashes, antialiased). */
    private static int greyPlotPixels(BufferedImage img) {
        int n = 0;
        for (int y = 62; y < Chart.HEIGHT - 82; y++) {
            for (int x = 102; x < Chart.WIDTH - 262; x++) {
                int rgb = img.getRGB(x, y);
                int r = (rgb >> 16) & 0xff;
                int g = (rgb >> 8) & 0xff;
                int b = rgb & 0xff;
                n += r == g && g == b && r >= 0x30 && r <= 0xd0 ? 1 : 0;
            }
        }
        return n;
    }

    @Test
    void tickLabelsAreShort() {
        assertEquals("4096", Chart.label(4096));
        assertEquals("0.5", Chart.label(0.5));
        assertEquals("2", Chart.label(2));
        assertEquals("12.5", Chart.label(12.5));
        assertEquals("0.001", Chart.label(0.001));
        assertEquals("3e6", Chart.label(3e6));
        assertEquals("0", Chart.label(0));
    }
}
