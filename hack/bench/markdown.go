package main

import (
	"fmt"
	"math"
	"strings"
	"time"
)

func (r *report) markdown() string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	p("# dr-syncer benchmarks\n\n")
	p("Run %s – %s (%s). Ratios are of figures measured in the same run (run *i* of a figure beside run *i* of its baseline): the median over %s runs, the spread min–max in brackets.\n\n",
		r.Started.Format(time.RFC3339), r.Finished.Format("15:04:05"), r.Finished.Sub(r.Started).Round(time.Second), r.Options["count"])

	p("## Goals\n\n")
	p("| figure | N | measured | ours (median) | baseline (median) | value: median [min–max] | goal | |\n|---|---|---|---|---|---|---|---|\n")
	for _, g := range r.Goals {
		goalLine(&b, g)
	}
	p("\n")
	p("## Growth from 10,000 to 100,000\n\n")
	if len(r.Growth) == 0 {
		p("Not measured: it needs both sizes in one report (`-large`, and `-n` holding 10000).\n\n")
	} else {
		p("| figure | measured | at 100,000 | at 10,000 | value: median [min–max] | goal | |\n|---|---|---|---|---|---|---|\n")
		for _, g := range r.Growth {
			p("| %s | %s | %s | %s | %s | %s | %s |\n", g.Figure, g.Measured, fmtStat(g.Ours, g.Unit), fmtStat(g.Base, g.Unit),
				fmtValue(g.Value, g.ValueFmt), g.Goal, mark(g.Status))
		}
		p("\n")
	}

	p("## Machine and versions\n\n")
	p("| | |\n|---|---|\n")
	p("| CPU | %s |\n| cores | %d |\n| memory | %.1f GiB |\n| kernel | %s |\n| host | %s |\n", r.Machine.CPU, r.Machine.Cores, r.Machine.MemGiB, r.Machine.Kernel, r.Machine.Hostname)
	for _, k := range []string{"go", "kube-apiserver", "etcd", "kubectl", "rsync", "git", "ssh"} {
		p("| %s | %s |\n", k, mdEscape(r.Versions[k]))
	}
	p("| load average (1, 5, 15 min) at start | %s |\n| load average at end | %s |\n", r.LoadStart, r.LoadEnd)
	p("| options | -n %s -count %s -large=%s -only %q |\n\n", r.Options["n"], r.Options["count"], r.Options["large"], r.Options["only"])
	p("The machine may be shared: the load average says how busy it was. Times on a loaded machine are longer than on an idle one, and ratios of figures of the same run less so.\n\n")

	p("## Runs\n\n")
	p("| suite | N | wall time | results | state | note |\n|---|---|---|---|---|---|\n")
	for _, rec := range r.Runs {
		n := "—"
		if rec.N > 0 {
			n = fmt.Sprint(rec.N)
		}
		state := "ok"
		if rec.Error != "" {
			state = "**failed**: " + mdEscape(firstLine(rec.Error))
		}
		p("| %s | %s | %s | %d | %s | %s |\n", rec.Suite, n, (time.Duration(rec.Seconds) * time.Second).Round(time.Second), len(rec.Results), state, mdEscape(rec.Note))
	}
	p("\nRaw output of each run: `raw/` beside this report.\n\n")
	p("### Commands\n\n```sh\n")
	for _, c := range r.Commands {
		p("%s\n", c)
	}
	p("```\n\n")

	p("## Every figure\n\n")
	p("| benchmark | N | unit | median | min–max | runs |\n|---|---|---|---|---|---|\n")
	for _, f := range r.Figures {
		n := "—"
		if f.N > 0 {
			n = fmt.Sprint(f.N)
		}
		p("| %s | %s | %s | %s | %s–%s | %d |\n", f.Benchmark, n, f.Unit, num(f.Median), num(f.Min), num(f.Max), len(f.Samples))
	}
	return b.String()
}

func goalLine(b *strings.Builder, g goalRow) {
	n := "—"
	if g.N > 0 {
		n = fmt.Sprint(g.N)
	}
	status := mark(g.Status)
	if g.Note != "" {
		status += " (" + g.Note + ")"
	}
	fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s | %s | %s |\n", mdEscape(g.Figure), n, mdEscape(g.Measured),
		fmtStat(g.Ours, g.Unit), fmtStat(g.Base, g.Unit), fmtValue(g.Value, g.ValueFmt), g.Goal, status)
}

func mark(status string) string {
	switch status {
	case met:
		return "✅ met"
	case notMet:
		return "❌ not met"
	case notMeasured:
		return "— not measured"
	}
	return status
}

// fmtStat shows a figure's median in a unit a person reads.
func fmtStat(s *stat, unit string) string {
	if s == nil {
		return "—"
	}
	switch unit {
	case "ns/op":
		return dur(s.Median * 1e-9)
	case "s":
		return dur(s.Median)
	case "objects/s":
		return num(s.Median) + " objects/s"
	}
	return num(s.Median) + " " + unit
}

func fmtValue(s *stat, unit string) string {
	if s == nil {
		return "—"
	}
	f := func(v float64) string {
		if unit == "×" {
			return num(v) + "×"
		}
		return num(v) + " " + unit
	}
	if len(s.Samples) == 1 {
		return "**" + f(s.Median) + "** (1 run)"
	}
	return fmt.Sprintf("**%s** [%s–%s]", f(s.Median), num(s.Min), num(s.Max))
}

func dur(sec float64) string {
	switch {
	case sec >= 1:
		return fmt.Sprintf("%.2f s", sec)
	case sec >= 1e-3:
		return fmt.Sprintf("%.1f ms", sec*1e3)
	default:
		return fmt.Sprintf("%.0f µs", sec*1e6)
	}
}

// num prints three significant digits, without an exponent for the sizes
// benchmarks print.
func num(v float64) string {
	a := math.Abs(v)
	switch {
	case a == 0:
		return "0"
	case a >= 1000:
		return fmt.Sprintf("%.0f", v)
	case a >= 100:
		return fmt.Sprintf("%.1f", v)
	case a >= 1:
		return fmt.Sprintf("%.2f", v)
	default:
		return fmt.Sprintf("%.3g", v)
	}
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}

func mdEscape(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "|", `\|`), "\n", " ")
}
