package pvcsync

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

func TestProgressLine(t *testing.T) {
	for _, p := range []Progress{
		{},
		{Bytes: 1 << 40, Percent: 100, Rate: 4.2e8, ToCheck: 0, Total: 50_000},
		{Bytes: 123_456, Percent: 7, Rate: 1, ToCheck: 49_000, Total: 50_000},
	} {
		line := FormatProgress(p)
		got, ok := ParseProgressLine(line)
		require.True(t, ok, line)
		require.Equal(t, p, got, line)
		// As the log carries it: with its end of line.
		got, ok = ParseProgressLine(line + "\n")
		require.True(t, ok, line)
		require.Equal(t, p, got, line)
	}
	for _, line := range []string{
		"",
		"pulled /data: 3 files, 10 bytes received",
		// rsync's own line is for ParseProgress, not this.
		"      1,048,576 100%  450.12MB/s    0:00:00 (xfr#1, to-chk=0/2)",
		"progress bytes=1",
		"progress bytes=-1 percent=0 rate=0 to-check=0 total=0",
		"progress bytes=1 percent=101 rate=0 to-check=0 total=0",
		"progress bytes=x percent=1 rate=0 to-check=0 total=0",
	} {
		_, ok := ParseProgressLine(line)
		require.False(t, ok, "%q", line)
	}
}

// TestFollowerReadsRunningPods follows the log of a running pod, as
// KubeRunner does while it waits for a pull Job, through a pipe that stands
// for the followed log stream (the test apiservers have no kubelet to serve
// one).
func TestFollowerReadsRunningPods(t *testing.T) {
	var mu sync.Mutex
	var got []Progress
	logs := map[string]*io.PipeWriter{}
	opened := make(chan string, 4)
	f := &follower{
		log: slog.New(slog.DiscardHandler),
		progress: func(p Progress) {
			mu.Lock()
			got = append(got, p)
			mu.Unlock()
		},
		open: func(ctx context.Context, pod string) (io.ReadCloser, error) {
			if pod == "broken" {
				return nil, errors.New("no kubelet")
			}
			r, w := io.Pipe()
			mu.Lock()
			logs[pod] = w
			mu.Unlock()
			opened <- pod
			return r, nil
		},
	}
	pod := func(name string, phase corev1.PodPhase) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, UID: types.UID(name + "-uid")}, Status: corev1.PodStatus{Phase: phase}}
	}
	ctx := t.Context()
	f.pod(ctx, pod("pending", corev1.PodPending)) // not yet
	f.pod(ctx, pod("broken", corev1.PodRunning))  // logged, ignored
	f.pod(ctx, pod("pull-1", corev1.PodRunning))
	f.pod(ctx, pod("pull-1", corev1.PodRunning)) // once per pod
	require.Equal(t, "pull-1", <-opened)
	select {
	case name := <-opened:
		t.Fatalf("log of %s opened, want only pull-1's", name)
	case <-time.After(100 * time.Millisecond):
	}

	mu.Lock()
	w := logs["pull-1"]
	mu.Unlock()
	want := []Progress{{Bytes: 10, Percent: 1, Rate: 5, ToCheck: 9, Total: 10}, {Bytes: 1000, Percent: 100, Rate: 7, Total: 10}}
	_, err := fmt.Fprintf(w, "%s\nsome other line\n%s\n", FormatProgress(want[0]), FormatProgress(want[1]))
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) == 2
	}, 5*time.Second, 10*time.Millisecond)
	require.Equal(t, want, got)

	// stop ends a reader blocked on a log that stays open, and no pod is
	// followed after it.
	done := make(chan struct{})
	go func() { f.stop(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("stop did not end the reader of an open log")
	}
	f.pod(ctx, pod("pull-2", corev1.PodRunning))
	select {
	case name := <-opened:
		t.Fatalf("log of %s opened after stop", name)
	case <-time.After(100 * time.Millisecond):
	}
}

// TestKubeRunnerAsksForTheRunningPodsLog: with a progress function, the
// runner asks the real apiserver for the followed log of the Job's pod once
// it runs (this apiserver has no kubelet to serve it: the request fails,
// the copy's outcome does not depend on it); without one, it never asks.
func TestKubeRunnerAsksForTheRunningPodsLog(t *testing.T) {
	for _, withProgress := range []bool{true, false} {
		t.Run(fmt.Sprintf("progress=%v", withProgress), func(t *testing.T) {
			tgt := clusters.Target.Clientset()
			ns := clusters.Target.Namespace(t)
			createPVC(t, tgt, ns, "data", "")
			var asked atomic.Int32
			cfg := rest.CopyConfig(clusters.Target.Config)
			cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper {
				return roundTripFunc(func(r *http.Request) (*http.Response, error) {
					if strings.HasSuffix(r.URL.Path, "/log") && r.URL.Query().Get("follow") == "true" && r.URL.Query().Get("container") == pullerName {
						asked.Add(1)
					}
					return rt.RoundTrip(r)
				})
			})
			client := kubernetes.NewForConfigOrDie(cfg)
			playJob(t, t.Context(), tgt, ns, func(_ *batchv1.Job, pod *corev1.Pod) *corev1.PodStatus {
				pod.Status = corev1.PodStatus{Phase: corev1.PodRunning}
				running, err := tgt.CoreV1().Pods(ns).UpdateStatus(t.Context(), pod, metav1.UpdateOptions{})
				if err != nil {
					t.Errorf("pod running: %v", err)
				} else {
					*pod = *running // playJob's next update goes on from it
				}
				// Give the runner the time to see it run.
				deadline := time.Now().Add(10 * time.Second)
				for asked.Load() == 0 && time.Now().Before(deadline) && withProgress {
					time.Sleep(20 * time.Millisecond)
				}
				if !withProgress {
					time.Sleep(time.Second)
				}
				return terminated(corev1.PodSucceeded, 0, reportJSON(t, PullReport{Stats: Stats{Files: 1}}))
			})
			r := &KubeRunner{Client: client, Image: "registry.example/dr-syncer:v1", PollInterval: 100 * time.Millisecond}
			var progress func(Progress)
			if withProgress {
				progress = func(Progress) {}
			}
			got, err := r.Run(t.Context(), testTransfer(ns), testCreds, progress)
			require.NoError(t, err)
			require.Equal(t, int64(1), got.Files)
			if withProgress {
				require.Equal(t, int32(1), asked.Load(), "one followed log request for the running pod")
			} else {
				require.Zero(t, asked.Load(), "no log read without a progress function")
			}
		})
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
