package io.headroute.experiment;

import java.awt.BasicStroke;
import java.awt.Color;
import java.awt.Font;
import java.awt.FontMetrics;
import java.awt.Graphics2D;
import java.awt.RenderingHints;
import java.awt.Shape;
import java.awt.geom.AffineTransform;
import java.awt.geom.Path2D;
import java.awt.image.BufferedImage;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Locale;
import java.util.TreeSet;
import java.util.function.DoubleUnaryOperator;
import javax.imageio.ImageIO;

/**
 * A small line or scatter chart rendered to PNG with Java2D in headless mode: title, axes with ticks and
 * tick labels, axis labels, one colour and marker per series, and a legend. Linear or logarithmic axes.
 * Reference curves (a 1x line, an ideal) are drawn dashed in grey across the data's x range and listed in
 * the legend after the series; the y axis takes in their values at the data's x values.
 */
final class Chart {
    static final int WIDTH = 960;
    static final int HEIGHT = 600;

    private static final Color[] COLORS = {new Color(0x1f77b4), new Color(0xd62728), new Color(0x2ca02c), new Color(0xff7f0e),
        new Color(0x9467bd), new Color(0x8c564b), new Color(0xe377c2), new Color(0x17becf), new Color(0x7f7f7f),
        new Color(0xbcbd22)};
    private static final int LEFT = 100;
    private static final int RIGHT = 260;
    private static final int TOP = 60;
    private static final int BOTTOM = 80;

    /** A named series of (x, y) points. */
    record Series(String name, List<double[]> points) {}

    /** A named curve y = f(x), drawn dashed. */
    record Reference(String name, DoubleUnaryOperator f) {}

    private static final Color[] REFERENCE_COLORS = {new Color(0x444444), new Color(0x999999)};

    private final String title;
    private final String xLabel;
    private final String yLabel;
    private final boolean logX;
    private final boolean logY;
    private final boolean lines;
    private final List<Series> series = new ArrayList<>();
    private final List<Reference> references = new ArrayList<>();
    private String note;

    Chart(String title, String xLabel, String yLabel, boolean logX, boolean logY, boolean lines) {
        this.title = title;
        this.xLabel = xLabel;
        this.yLabel = yLabel;
        this.logX = logX;
        this.logY = logY;
        this.lines = lines;
    }

    /** Adds a series; points with a non-finite or (on a log axis) non-positive coordinate are left out. */
    Chart add(String name, List<double[]> points) {
        List<double[]> kept = new ArrayList<>();
        for (double[] p : points) {
            if (Double.isFinite(p[0]) && Double.isFinite(p[1]) && (!logX || p[0] > 0) && (!logY || p[1] > 0)) {
                kept.add(p);
            }
        }
        kept.sort(Comparator.comparingDouble(p -> p[0]));
        if (!kept.isEmpty()) {
            series.add(new Series(name, kept));
        }
        return this;
    }

    /** Adds a reference curve y = f(x) (drawn only where there are data points to refer to). */
    Chart reference(String name, DoubleUnaryOperator f) {
        references.add(new Reference(name, f));
        return this;
    }

    /** A line printed under the title (e.g. "predicted from the memory plans"). */
    Chart note(String text) {
        this.note = text;
        return this;
    }

    boolean isEmpty() {
        return series.isEmpty();
    }

    byte[] png() {
        BufferedImage img = new BufferedImage(WIDTH, HEIGHT, BufferedImage.TYPE_INT_RGB);
        Graphics2D g = img.createGraphics();
        try {
            draw(g);
        } finally {
            g.dispose();
        }
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        try {
            if (!ImageIO.write(img, "png", out)) {
                throw new IllegalStateException("no PNG writer in this Java runtime");
            }
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        return out.toByteArray();
    }

    private void draw(Graphics2D g) {
        g.setRenderingHint(RenderingHints.KEY_ANTIALIASING, RenderingHints.VALUE_ANTIALIAS_ON);
        g.setRenderingHint(RenderingHints.KEY_TEXT_ANTIALIASING, RenderingHints.VALUE_TEXT_ANTIALIAS_ON);
        g.setColor(Color.WHITE);
        g.fillRect(0, 0, WIDTH, HEIGHT);
        int pw = WIDTH - LEFT - RIGHT;
        int ph = HEIGHT - TOP - BOTTOM;
        g.setColor(Color.BLACK);
        g.setFont(new Font(Font.SANS_SERIF, Font.BOLD, 17));
        centered(g, title, LEFT + pw / 2, 28);
        if (note != null) {
            g.setFont(new Font(Font.SANS_SERIF, Font.ITALIC, 13));
            centered(g, note, LEFT + pw / 2, 48);
        }
        g.setFont(new Font(Font.SANS_SERIF, Font.PLAIN, 14));
        centered(g, xLabel, LEFT + pw / 2, HEIGHT - 22);
        AffineTransform saved = g.getTransform();
        g.rotate(-Math.PI / 2);
        centered(g, yLabel, -(TOP + ph / 2), 22);
        g.setTransform(saved);

        g.setColor(new Color(0xf7f7f7));
        g.fillRect(LEFT, TOP, pw, ph);
        g.setColor(Color.BLACK);
        g.drawRect(LEFT, TOP, pw, ph);
        if (series.isEmpty()) {
            centered(g, "no measured points", LEFT + pw / 2, TOP + ph / 2);
            return;
        }
        Axis x = axis(0, logX);
        Axis y = axis(1, logY);
        g.setFont(new Font(Font.SANS_SERIF, Font.PLAIN, 12));
        for (double t : x.ticks) {
            int px = LEFT + (int) Math.round(x.frac(t) * pw);
            g.setColor(new Color(0xdddddd));
            g.drawLine(px, TOP + 1, px, TOP + ph - 1);
            g.setColor(Color.BLACK);
            g.drawLine(px, TOP + ph, px, TOP + ph + 5);
            centered(g, label(t), px, TOP + ph + 20);
        }
        FontMetrics fm = g.getFontMetrics();
        for (double t : y.ticks) {
            int py = TOP + ph - (int) Math.round(y.frac(t) * ph);
            g.setColor(new Color(0xdddddd));
            g.drawLine(LEFT + 1, py, LEFT + pw - 1, py);
            g.setColor(Color.BLACK);
            g.drawLine(LEFT - 5, py, LEFT, py);
            String s = label(t);
            g.drawString(s, LEFT - 8 - fm.stringWidth(s), py + fm.getAscent() / 2 - 1);
        }
        Shape clip = g.getClip();
        g.clipRect(LEFT + 1, TOP + 1, pw - 1, ph - 1);
        for (int i = 0; i < references.size(); i++) {
            g.setColor(REFERENCE_COLORS[i % REFERENCE_COLORS.length]);
            g.setStroke(dashed());
            DoubleUnaryOperator f = references.get(i).f();
            // One path, so that the dashes run on across its segments.
            Path2D.Double path = new Path2D.Double();
            boolean have = false;
            for (int k = 0; k <= 200; k++) {
                double t = k / 200.0;
                double xv = x.log ? x.lo * Math.pow(x.hi / x.lo, t) : x.lo + (x.hi - x.lo) * t;
                double yv = f.applyAsDouble(xv);
                if (!Double.isFinite(yv) || (y.log && yv <= 0)) {
                    have = false;
                    continue;
                }
                double px = LEFT + t * pw;
                double py = TOP + ph - Math.max(-2.0, Math.min(3.0, y.frac(yv))) * ph;
                if (have) {
                    path.lineTo(px, py);
                } else {
                    path.moveTo(px, py);
                }
                have = true;
            }
            g.draw(path);
        }
        g.setClip(clip);
        g.setStroke(new BasicStroke(2f));
        for (int i = 0; i < series.size(); i++) {
            Series s = series.get(i);
            g.setColor(COLORS[i % COLORS.length]);
            int prevX = 0;
            int prevY = 0;
            for (int k = 0; k < s.points().size(); k++) {
                double[] p = s.points().get(k);
                int px = LEFT + (int) Math.round(x.frac(p[0]) * pw);
                int py = TOP + ph - (int) Math.round(y.frac(p[1]) * ph);
                if (lines && k > 0) {
                    g.drawLine(prevX, prevY, px, py);
                }
                marker(g, i, px, py);
                prevX = px;
                prevY = py;
            }
        }
        g.setStroke(new BasicStroke(1f));
        int ly = TOP + 10;
        for (int i = 0; i < series.size(); i++) {
            g.setColor(COLORS[i % COLORS.length]);
            g.setStroke(new BasicStroke(2f));
            if (lines) {
                g.drawLine(LEFT + pw + 14, ly, LEFT + pw + 38, ly);
            }
            marker(g, i, LEFT + pw + 26, ly);
            g.setStroke(new BasicStroke(1f));
            g.setColor(Color.BLACK);
            g.drawString(fit(g, series.get(i).name(), RIGHT - 52), LEFT + pw + 44, ly + fm.getAscent() / 2 - 1);
            ly += 22;
        }
        for (int i = 0; i < references.size(); i++) {
            g.setColor(REFERENCE_COLORS[i % REFERENCE_COLORS.length]);
            g.setStroke(dashed());
            g.drawLine(LEFT + pw + 14, ly, LEFT + pw + 38, ly);
            g.setStroke(new BasicStroke(1f));
            g.setColor(Color.BLACK);
            g.drawString(fit(g, references.get(i).name(), RIGHT - 52), LEFT + pw + 44, ly + fm.getAscent() / 2 - 1);
            ly += 22;
        }
    }

    private static BasicStroke dashed() {
        return new BasicStroke(1.5f, BasicStroke.CAP_BUTT, BasicStroke.JOIN_MITER, 10f, new float[] {6f, 4f}, 0f);
    }

    /** Filled circle, square, triangle or diamond, by series. */
    private static void marker(Graphics2D g, int i, int x, int y) {
        int r = 4;
        switch ((i / COLORS.length + i) % 4) {
            case 0 -> g.fillOval(x - r, y - r, 2 * r, 2 * r);
            case 1 -> g.fillRect(x - r, y - r, 2 * r, 2 * r);
            case 2 -> g.fillPolygon(new int[] {x - r - 1, x + r + 1, x}, new int[] {y + r, y + r, y - r - 1}, 3);
            default -> g.fillPolygon(new int[] {x - r - 1, x, x + r + 1, x}, new int[] {y, y - r - 1, y, y + r + 1}, 4);
        }
    }

    private static String fit(Graphics2D g, String s, int width) {
        FontMetrics fm = g.getFontMetrics();
        if (fm.stringWidth(s) <= width) {
            return s;
        }
        String t = s;
        while (t.length() > 1 && fm.stringWidth(t + "…") > width) {
            t = t.substring(0, t.length() - 1);
        }
        return t + "…";
    }

    private static void centered(Graphics2D g, String s, int cx, int baseline) {
        g.drawString(s, cx - g.getFontMetrics().stringWidth(s) / 2, baseline);
    }

    /** A tick value as short text: 3 significant digits, no exponent below a million. */
    static String label(double v) {
        double a = Math.abs(v);
        if (a >= 1e6 || (a > 0 && a < 1e-3)) {
            return String.format(Locale.ROOT, "%.0e", v).replace("e+0", "e").replace("e-0", "e-");
        }
        String s = a >= 100 ? String.format(Locale.ROOT, "%.0f", v) : a >= 10 ? String.format(Locale.ROOT, "%.1f", v)
                : String.format(Locale.ROOT, "%.3f", v);
        if (s.contains(".")) {
            s = s.replaceAll("0+$", "").replaceAll("\\.$", "");
        }
        return s;
    }

    private record Axis(double lo, double hi, boolean log, List<Double> ticks) {
        double frac(double v) {
            return log ? (Math.log(v) - Math.log(lo)) / (Math.log(hi) - Math.log(lo)) : (v - lo) / (hi - lo);
        }
    }

    /** The legend's entries in order: the series, then the references (for tests). */
    List<String> legend() {
        List<String> names = new ArrayList<>();
        series.forEach(x -> names.add(x.name()));
        references.forEach(r -> names.add(r.name()));
        return names;
    }

    /** The y axis's range, {lo, hi}, as drawn (for tests). */
    double[] yRange() {
        Axis a = axis(1, logY);
        return new double[] {a.lo, a.hi};
    }

    private Axis axis(int dim, boolean log) {
        double lo = Double.POSITIVE_INFINITY;
        double hi = Double.NEGATIVE_INFINITY;
        TreeSet<Double> values = new TreeSet<>();
        for (Series s : series) {
            for (double[] p : s.points()) {
                lo = Math.min(lo, p[dim]);
                hi = Math.max(hi, p[dim]);
                values.add(p[dim]);
                if (dim == 1) {
                    // The references' values where there are data, so that a 1x line or an ideal is in view.
                    for (Reference r : references) {
                        double v = r.f().applyAsDouble(p[0]);
                        if (Double.isFinite(v) && (!log || v > 0)) {
                            lo = Math.min(lo, v);
                            hi = Math.max(hi, v);
                        }
                    }
                }
            }
        }
        if (log) {
            // Data that are all powers of two (sequence lengths) get a tick at each one.
            boolean pow2 = dim == 0 && values.size() <= 12 && values.stream().allMatch(v -> v == Math.rint(v)
                    && Long.bitCount((long) (double) v) == 1);
            if (lo == hi) {
                lo /= 2;
                hi *= 2;
            }
            double l = lo / Math.pow(hi / lo, 0.05);
            double h = hi * Math.pow(hi / lo, 0.05);
            if (pow2) {
                return new Axis(l, h, true, List.copyOf(values));
            }
            List<Double> ticks = new ArrayList<>();
            double decades = Math.log10(h / l);
            double[] steps = decades > 5 ? new double[] {1} : decades > 2 ? new double[] {1, 3} : new double[] {1, 2, 5};
            for (int e = (int) Math.floor(Math.log10(l)); e <= (int) Math.ceil(Math.log10(h)); e++) {
                for (double m : steps) {
                    double t = m * Math.pow(10, e);
                    if (t >= l && t <= h) {
                        ticks.add(t);
                    }
                }
            }
            if (ticks.size() < 4) {
                // Less than a decade or so: every integer multiple of the decade.
                ticks.clear();
                for (int e = (int) Math.floor(Math.log10(l)); e <= (int) Math.ceil(Math.log10(h)); e++) {
                    for (int m = 1; m <= 9; m++) {
                        double t = m * Math.pow(10, e);
                        if (t >= l && t <= h) {
                            ticks.add(t);
                        }
                    }
                }
            }
            if (decades > 8) {
                List<Double> thin = new ArrayList<>();
                for (int i = 0; i < ticks.size(); i += 2) {
                    thin.add(ticks.get(i));
                }
                ticks = thin;
            }
            return new Axis(l, h, true, ticks);
        }
        if (lo == hi) {
            lo -= lo == 0 ? 1 : Math.abs(lo) / 2;
            hi += hi == 0 ? 1 : Math.abs(hi) / 2;
        }
        double pad = (hi - lo) * 0.05;
        double l = lo - pad;
        double h = hi + pad;
        double raw = (h - l) / 6;
        double mag = Math.pow(10, Math.floor(Math.log10(raw)));
        double step = raw / mag < 1.5 ? mag : raw / mag < 3.5 ? 2 * mag : raw / mag < 7.5 ? 5 * mag : 10 * mag;
        List<Double> ticks = new ArrayList<>();
        for (double t = Math.ceil(l / step) * step; t <= h + step * 1e-9; t += step) {
            ticks.add(Math.abs(t) < step * 1e-9 ? 0 : t);
        }
        return new Axis(l, h, false, ticks);
    }
}
