package io.headroute.cli;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.TimeUnit;

/** Which commit the running headroute was built from, for reports: best effort, never fails. */
final class GitCommit {
    private GitCommit() {}

    /** "abc1234…" (with " (uncommitted changes)" when the checkout is dirty), or why it is unknown. */
    static String describe() {
        Path here;
        try {
            here = Path.of(Main.class.getProtectionDomain().getCodeSource().getLocation().toURI()).toAbsolutePath();
        } catch (Exception e) {
            return "unknown (cannot locate headroute's classes)";
        }
        for (Path dir = here; dir != null; dir = dir.getParent()) {
            // The device bundle records its commit in MANIFEST.txt next to lib/.
            Path manifest = dir.resolve("MANIFEST.txt");
            if (Files.isRegularFile(manifest)) {
                try {
                    String commit = null;
                    String dirty = null;
                    for (String line : Files.readAllLines(manifest, StandardCharsets.UTF_8)) {
                        if (line.startsWith("commit: ")) {
                            commit = line.substring(8).strip();
                        } else if (line.startsWith("dirty: ")) {
                            dirty = line.substring(7).strip();
                        }
                    }
                    if (commit != null) {
                        return commit + ("yes".equals(dirty) ? " (uncommitted changes)" : "") + " (from the device bundle)";
                    }
                } catch (IOException e) {
                    // Fall through to git.
                }
            }
            if (Files.exists(dir.resolve(".git"))) {
                String head = git(dir, "rev-parse", "HEAD");
                if (head == null) {
                    return "unknown (git could not read " + dir + ")";
                }
                String status = git(dir, "status", "--porcelain", "--untracked-files=no");
                return head + (status != null && !status.isEmpty() ? " (uncommitted changes)" : "");
            }
        }
        return "unknown (not run from a git checkout)";
    }

    private static String git(Path dir, String... args) {
        String[] cmd = new String[args.length + 3];
        cmd[0] = "git";
        cmd[1] = "-C";
        cmd[2] = dir.toString();
        System.arraycopy(args, 0, cmd, 3, args.length);
        try {
            // Output to a file, so that a git that never exits cannot block a read: wait at most 5 s.
            java.nio.file.Path outFile = java.nio.file.Files.createTempFile("headroute-git", ".txt");
            try {
                Process p = new ProcessBuilder(cmd).redirectOutput(outFile.toFile())
                        .redirectError(ProcessBuilder.Redirect.DISCARD).start();
                if (!p.waitFor(5, TimeUnit.SECONDS)) {
                    p.destroyForcibly();
                    return null;
                }
                if (p.exitValue() != 0) {
                    return null;
                }
                return java.nio.file.Files.readString(outFile, StandardCharsets.UTF_8).strip();
            } finally {
                java.nio.file.Files.deleteIfExists(outFile);
            }
        } catch (IOException e) {
            return null;
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return null;
        }
    }
}
