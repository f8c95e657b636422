package testcluster

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dr-syncer/dr-syncer/internal/syncbuf"
)

// helperEnv makes TestTeardownHelper, run in a child process, end the way
// its value says.
const helperEnv = "DR_SYNCER_TESTCLUSTER_HELPER"

// TestTeardown runs this test binary again as a child whose test ends badly
// — a panic, a -timeout, a SIGKILL, a SIGINT, a failed test — and checks
// that afterwards no control-plane process of the child's clusters runs and
// their directory is gone.
func TestTeardown(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a pair of clusters per case")
	}
	cases := []struct {
		how  string
		args []string
	}{
		{how: "fail"},
		{how: "panic"},
		{how: "timeout", args: []string{"-test.timeout=3s"}},
		{how: "sigkill"},
		{how: "sigint"},
	}
	for _, tc := range cases {
		t.Run(tc.how, func(t *testing.T) {
			t.Parallel()
			args := append([]string{"-test.run=^TestTeardownHelper$"}, tc.args...)
			cmd := exec.CommandContext(t.Context(), os.Args[0], args...)
			cmd.Env = append(os.Environ(), helperEnv+"="+tc.how)
			var stderr syncbuf.Buffer
			cmd.Stderr = &stderr
			t.Cleanup(func() {
				if t.Failed() {
					t.Logf("the child's stderr:\n%s", stderr.String())
				}
			})
			out, err := cmd.StdoutPipe()
			require.NoError(t, err)
			require.NoError(t, cmd.Start())

			// The child reports its clusters' directory and how many
			// control-plane processes it found running there.
			var dir string
			var running int
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				if d, ok := strings.CutPrefix(sc.Text(), "helper-dir: "); ok {
					f := strings.Fields(d)
					dir = f[0]
					running, err = strconv.Atoi(f[1])
					require.NoError(t, err)
					break
				}
			}
			require.NotEmpty(t, dir, "the child did not start its clusters")
			require.Equal(t, 4, running, "the child should run 2 kube-apiservers and 2 etcds")
			if tc.how == "sigint" {
				require.NoError(t, cmd.Process.Signal(syscall.SIGINT))
			}
			go func() { _, _ = bufio.NewReader(out).WriteTo(discard{}) }()
			err = cmd.Wait()
			require.Error(t, err, "the child's run must fail")

			deadline := time.Now().Add(30 * time.Second)
			for {
				procs, err := controlPlaneProcesses(dir)
				require.NoError(t, err)
				_, statErr := os.Stat(dir)
				if len(procs) == 0 && os.IsNotExist(statErr) {
					return
				}
				if time.Now().After(deadline) {
					_ = killAll(t.Context(), dir) // do not leave them to the next test run
					t.Fatalf("%s: after 30 s, processes %v still run under %s (stat: %v)", tc.how, procs, dir, statErr)
				}
				time.Sleep(100 * time.Millisecond)
			}
		})
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

func TestTeardownHelper(t *testing.T) {
	how := os.Getenv(helperEnv)
	if how == "" {
		t.Skip("run by TestTeardown in a child process")
	}
	procs, err := controlPlaneProcesses(clusters.Dir())
	require.NoError(t, err)
	fmt.Printf("helper-dir: %s %d\n", clusters.Dir(), len(procs))
	switch how {
	case "fail":
		t.Fatal("helper: a failing test")
	case "panic":
		panic("helper: a crashing test")
	case "sigkill":
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {}
	case "timeout", "sigint":
		select {} // until -timeout or the parent's SIGINT
	default:
		t.Fatalf("unknown %s=%q", helperEnv, how)
	}
}
