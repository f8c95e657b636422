package main

import (
	"math"
	"os"
	"runtime/debug"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dr-syncer/dr-syncer/controller"
)

// TestSetMemoryLimit: --memory-limit sets the Go runtime's soft limit from a
// size, leaves it alone with none, and refuses what is not a size.
func TestSetMemoryLimit(t *testing.T) {
	prev := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(prev) })
	for _, tc := range []struct {
		flag    string
		want    int64
		wantErr bool
	}{
		{flag: "512Mi", want: 512 << 20},
		{flag: "1G", want: 1_000_000_000},
		{flag: "none", want: 0},
		{flag: "0", want: 0},
		{flag: "lots", wantErr: true},
		{flag: "-1Mi", wantErr: true},
	} {
		debug.SetMemoryLimit(math.MaxInt64)
		got, err := setMemoryLimit(tc.flag)
		if tc.wantErr {
			require.Error(t, err, tc.flag)
			continue
		}
		require.NoError(t, err, tc.flag)
		require.Equal(t, tc.want, got, tc.flag)
		if tc.want > 0 {
			require.Equal(t, tc.want, debug.SetMemoryLimit(-1), tc.flag)
		} else {
			require.Equal(t, int64(math.MaxInt64), debug.SetMemoryLimit(-1), "%s: no limit", tc.flag)
		}
	}
}

// TestSetGCPercent: --gc-percent sets the garbage collector's target from a
// percentage, controller.DefaultGCPercent by default unless GOGC is set,
// and refuses what is not a percentage.
func TestSetGCPercent(t *testing.T) {
	prev := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(prev) })
	t.Setenv("GOGC", "")
	for _, tc := range []struct {
		flag, gogc string
		want       int // set, and returned
		untouched  bool
		wantErr    bool
	}{
		{flag: "auto", want: controller.DefaultGCPercent},
		{flag: "", want: controller.DefaultGCPercent},
		{flag: "auto", gogc: "200", untouched: true},
		{flag: "75", want: 75},
		{flag: "75", gogc: "200", want: 75},
		{flag: "0", wantErr: true},
		{flag: "-1", wantErr: true},
		{flag: "half", wantErr: true},
	} {
		t.Setenv("GOGC", tc.gogc)
		debug.SetGCPercent(100)
		got, err := setGCPercent(tc.flag)
		if tc.wantErr {
			require.Error(t, err, tc.flag)
			require.Equal(t, 100, debug.SetGCPercent(100), "%s: left as it was", tc.flag)
			continue
		}
		require.NoError(t, err, tc.flag)
		if tc.untouched {
			require.Equal(t, 0, got, tc.flag)
			require.Equal(t, 100, debug.SetGCPercent(100), "%s with GOGC=%s: left to the runtime", tc.flag, tc.gogc)
			continue
		}
		require.Equal(t, tc.want, got, tc.flag)
		require.Equal(t, tc.want, debug.SetGCPercent(100), tc.flag)
	}
}

// TestRunRegistry: the controller's /metrics registry exports the
// process's resident memory and CPU and the Go runtime's garbage collector
// target and memory limit, as --gc-percent and --memory-limit set them.
func TestRunRegistry(t *testing.T) {
	prevPct := debug.SetGCPercent(100)
	prevLimit := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetGCPercent(prevPct); debug.SetMemoryLimit(prevLimit) })
	t.Setenv("GOGC", "")
	_, err := setGCPercent("auto")
	require.NoError(t, err)
	_, err = setMemoryLimit("300Mi")
	require.NoError(t, err)

	families, err := runRegistry().Gather()
	require.NoError(t, err)
	got := map[string]float64{}
	for _, f := range families {
		if m := f.GetMetric(); len(m) == 1 {
			switch {
			case m[0].GetGauge() != nil:
				got[f.GetName()] = m[0].GetGauge().GetValue()
			case m[0].GetCounter() != nil:
				got[f.GetName()] = m[0].GetCounter().GetValue()
			}
		}
	}
	require.Equal(t, float64(controller.DefaultGCPercent), got["go_gc_gogc_percent"])
	require.Equal(t, float64(300<<20), got["go_gc_gomemlimit_bytes"])
	require.Greater(t, got["go_memstats_heap_alloc_bytes"], 0.0)
	if _, err := os.Stat("/proc/self/stat"); err == nil {
		require.Greater(t, got["process_resident_memory_bytes"], 0.0)
		require.Contains(t, got, "process_cpu_seconds_total")
	}
}
