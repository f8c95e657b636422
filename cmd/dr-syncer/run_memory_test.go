package main

import (
	"math"
	"runtime/debug"
	"testing"

	"github.com/stretchr/testify/require"
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
