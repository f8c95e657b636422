package main

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseResults(t *testing.T) {
	out := `goos: linux
goarch: amd64
pkg: github.com/dr-syncer/dr-syncer/controller
cpu: AMD EPYC 7B13
BenchmarkFullSnapshot/list-baseline-2         	       3	 412345678 ns/op	     24251 objects/s	        80.00 requests/op
BenchmarkContinuousLag
    run_bench_test.go:129: warm-up (full snapshot and first apply of 10000 objects, then one change): 41.2s
BenchmarkContinuousLag-2   	       1	52000000000 ns/op	         0.3100 burst50-p50-s	         1.200 burst50-p99-s	       180.5 VmHWM-MiB
BenchmarkContinuousLag-2   	I1125 23:27:48.445753   10538 leaderelection.go:258] "Attempting to acquire leader lease..."
I1125 23:27:48.455458   10538 leaderelection.go:272] "Successfully acquired lease"
       1	10547537560 ns/op	       527.8 VmHWM-MiB
BenchmarkPull/2GiB-file/full-2 	1	 9e+09 ns/op	 0.95 x-tput-agent/raw-a
BenchmarkBroken-2 	 1	 12 ns/op	 7
PASS
`
	h := map[string]string{}
	got := parseResults(strings.NewReader(out), h)
	want := []result{
		{Name: "BenchmarkFullSnapshot/list-baseline", Iterations: 3, Metrics: map[string]float64{"ns/op": 412345678, "objects/s": 24251, "requests/op": 80}},
		{Name: "BenchmarkContinuousLag", Iterations: 1, Metrics: map[string]float64{"ns/op": 52e9, "burst50-p50-s": 0.31, "burst50-p99-s": 1.2, "VmHWM-MiB": 180.5}},
		{Name: "BenchmarkContinuousLag", Iterations: 1, Metrics: map[string]float64{"ns/op": 10547537560, "VmHWM-MiB": 527.8}},
		{Name: "BenchmarkPull/2GiB-file/full", Iterations: 1, Metrics: map[string]float64{"ns/op": 9e9, "x-tput-agent/raw-a": 0.95}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("parseResults =\n%+v\nwant\n%+v", got, want)
	}
	if h["cpu"] != "AMD EPYC 7B13" || h["pkg"] != "github.com/dr-syncer/dr-syncer/controller" {
		t.Errorf("header = %v", h)
	}
}

func TestMaxRSS(t *testing.T) {
	v, ok := maxRSSKiB("\tCommand being timed: \"x\"\n\tMaximum resident set size (kbytes): 262144\n")
	if !ok || v != 262144 {
		t.Errorf("maxRSSKiB = %v, %v", v, ok)
	}
}

func TestPairedRatio(t *testing.T) {
	a := &figure{Samples: []float64{2, 4, 9}}
	b := &figure{Samples: []float64{1, 1, 3}}
	s := paired(a, b, div)
	if s.Median != 3 || s.Min != 2 || s.Max != 4 {
		t.Errorf("paired = %+v, want median 3 in [2, 4]", s)
	}
}
