package pvcsync

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"strings"
)

// progressPrefix starts the progress lines `dr-syncer agent pull` writes to
// its standard output, which the pull pod's log carries to KubeRunner.
const progressPrefix = "progress "

// FormatProgress is the line `dr-syncer agent pull` prints for an update:
// what ParseProgressLine reads back.
func FormatProgress(p Progress) string {
	return fmt.Sprintf("%sbytes=%d percent=%d rate=%.0f to-check=%d total=%d", progressPrefix, p.Bytes, p.Percent, p.Rate, p.ToCheck, p.Total)
}

// ParseProgressLine reads a line of FormatProgress; ok is false for any
// other line.
func ParseProgressLine(line string) (p Progress, ok bool) {
	rest, found := strings.CutPrefix(strings.TrimSpace(line), progressPrefix)
	if !found {
		return Progress{}, false
	}
	n, err := fmt.Sscanf(rest, "bytes=%d percent=%d rate=%g to-check=%d total=%d", &p.Bytes, &p.Percent, &p.Rate, &p.ToCheck, &p.Total)
	if err != nil || n != 5 || p.Bytes < 0 || p.Percent < 0 || p.Percent > 100 || p.Rate < 0 || p.ToCheck < 0 || p.Total < 0 {
		return Progress{}, false
	}
	return p, true
}

// followProgress reads the log of a pull pod as it is written and hands
// each progress line to progress, until the log ends, ctx is done or open
// fails. Progress is best effort: an error only ends the updates (the
// outcome comes from the pod's termination message, not from its log).
func followProgress(ctx context.Context, open func(context.Context) (io.ReadCloser, error), progress func(Progress)) error {
	r, err := open(ctx)
	if err != nil {
		return err
	}
	defer r.Close()
	// A followed log blocks in Read until its next line: closing it is
	// what ends the read when ctx is done.
	stop := context.AfterFunc(ctx, func() { r.Close() })
	defer stop()
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if p, ok := ParseProgressLine(sc.Text()); ok {
			progress(p)
		}
	}
	if ctx.Err() != nil {
		return nil
	}
	return sc.Err()
}
