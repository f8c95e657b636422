package main

import (
	"bufio"
	"io"
	"regexp"
	"strconv"
	"strings"
)

// A result is one line of `go test -bench` output: a benchmark's name
// (without the -GOMAXPROCS suffix), its iterations, and every figure it
// printed (ns/op and the custom metrics), by unit.
type result struct {
	Name       string             `json:"name"`
	Iterations int64              `json:"iterations"`
	Metrics    map[string]float64 `json:"metrics"`
}

var (
	benchLine = regexp.MustCompile(`^(Benchmark\S+)\s+(\d+)\s+(.+)$`)
	// A benchmark that logs to stderr (klog) splits its line: the name,
	// then the log, then the figures on a line of their own.
	benchName = regexp.MustCompile(`^(Benchmark\S+)\s`)
	figures   = regexp.MustCompile(`^\s*(\d+)\s+(\S+ ns/op.*)$`)
	procs     = regexp.MustCompile(`-\d+$`)
)

// parseResults reads the result lines of benchmark output, in order, and
// the header lines (goos, goarch, pkg, cpu) into header. Log lines and
// anything else are skipped.
func parseResults(r io.Reader, header map[string]string) []result {
	var out []result
	pending := "" // a benchmark name whose figures have not come yet
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 1<<20), 1<<24)
	for sc.Scan() {
		line := sc.Text()
		if k, v, ok := strings.Cut(line, ": "); ok && header != nil {
			switch k {
			case "goos", "goarch", "pkg", "cpu":
				header[k] = strings.TrimSpace(v)
				continue
			}
		}
		m := benchLine.FindStringSubmatch(line)
		if m == nil {
			if f := figures.FindStringSubmatch(line); f != nil && pending != "" {
				m = []string{line, pending, f[1], f[2]}
			} else {
				if n := benchName.FindStringSubmatch(line); n != nil {
					pending = n[1]
				}
				continue
			}
		}
		pending = ""
		n, err := strconv.ParseInt(m[2], 10, 64)
		if err != nil {
			continue
		}
		fields := strings.Fields(m[3])
		if len(fields)%2 != 0 {
			continue
		}
		res := result{Name: procs.ReplaceAllString(m[1], ""), Iterations: n, Metrics: map[string]float64{}}
		ok := true
		for i := 0; i < len(fields); i += 2 {
			v, err := strconv.ParseFloat(fields[i], 64)
			if err != nil {
				ok = false
				break
			}
			res.Metrics[fields[i+1]] = v
		}
		if ok && len(res.Metrics) > 0 {
			out = append(out, res)
		}
	}
	return out
}

// maxRSSKiB reads "Maximum resident set size (kbytes)" from the output of
// /usr/bin/time -v.
func maxRSSKiB(text string) (float64, bool) {
	for line := range strings.SplitSeq(text, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if ok && k == "Maximum resident set size (kbytes)" {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return f, err == nil
		}
	}
	return 0, false
}
