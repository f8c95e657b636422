package pvcsync

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	gocmp "github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestRecordLoadAbsent(t *testing.T) {
	s := &RecordStore{Client: clusters.Target.Clientset(), Namespace: clusters.Target.Namespace(t), Name: RecordName("none")}
	vols, err := s.Load(t.Context())
	if err != nil || len(vols) != 0 {
		t.Fatalf("Load = %v, %v; want empty", vols, err)
	}
}

func TestRecordAcrossCommits(t *testing.T) {
	tgt := clusters.Target.Clientset()
	// The default namespace, created by the first write if missing.
	s := &RecordStore{Client: tgt, Name: RecordName(uniq(t, "record"))}
	t.Cleanup(func() {
		_ = tgt.CoreV1().ConfigMaps(RecordNamespace).Delete(context.Background(), s.Name, metav1.DeleteOptions{})
	})
	src, dst := Claim{"prod", "db"}, Claim{"dr", "db"}
	t0 := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	result := func(commit string, state State, exit, attempts int, minute int) Result {
		return Result{
			Transfer: Transfer{Source: src, Target: dst, Commit: commit},
			State:    state, Reason: fmt.Sprintf("%s at %s", state, commit), ExitCode: exit, Attempts: attempts,
			Started: t0.Add(time.Duration(minute) * time.Minute), Duration: 30 * time.Second,
			Stats: Stats{Files: int64(10 * minute), BytesReceived: int64(1000 * minute)},
		}
	}
	steps := []struct {
		r         Result
		dataAt    string // DataCommit after the step
		copiedMin int    // the minute of the copy it holds
		dirty     bool
	}{
		{result("c1", StateSucceeded, 0, 1, 1), "c1", 1, false},
		{result("c2", StateSkipped, 0, 0, 2), "c1", 1, false},
		// rsync stopped at start-up: nothing written.
		{result("c3", StateFailed, 5, 3, 3), "c1", 1, false},
		// A partial transfer: the target is a mix.
		{result("c4", StateFailed, 23, 3, 4), "c1", 1, true},
		// A clean failure afterwards does not make it clean again.
		{result("c5", StateFailed, 1, 1, 5), "c1", 1, true},
		{result("c6", StateSucceeded, 0, 2, 6), "c6", 6, false},
		// Killed without an exit code: it may have written.
		{result("c7", StateFailed, -1, 1, 7), "c6", 6, true},
	}
	for _, st := range steps {
		if err := s.Update(t.Context(), []Result{st.r}); err != nil {
			t.Fatal(err)
		}
		vols, err := s.Load(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		at := t0.Add(time.Duration(st.copiedMin)*time.Minute + 30*time.Second)
		want := VolumeStatus{
			Target: dst, Source: src, DataCommit: st.dataAt, CopiedAt: at, Duration: 30 * time.Second,
			Bytes: int64(1000 * st.copiedMin), Files: int64(10 * st.copiedMin), Dirty: st.dirty,
			LastAttempt: Attempt{
				Commit: st.r.Transfer.Commit, State: st.r.State, Reason: st.r.Reason,
				At: st.r.Started.Add(st.r.Duration), Attempts: st.r.Attempts, ExitCode: st.r.ExitCode,
			},
		}
		if d := gocmp.Diff(map[string]VolumeStatus{"dr/db": want}, vols); d != "" {
			t.Fatalf("after %s %s (-want +got):\n%s", st.r.Transfer.Commit, st.r.State, d)
		}
	}
}

func TestMayHaveWritten(t *testing.T) {
	tests := []struct {
		exit, attempts int
		want           bool
	}{
		{0, 0, false}, // never attempted (a planning failure)
		{-1, 0, false},
		{1, 1, false}, {2, 1, false}, {4, 1, false}, {5, 2, false},
		{-1, 1, true}, {0, 1, true}, {3, 1, true}, {11, 1, true}, {12, 1, true},
		{20, 1, true}, {23, 1, true}, {24, 1, true}, {30, 1, true}, {255, 1, true},
	}
	for _, tt := range tests {
		r := Result{State: StateFailed, ExitCode: tt.exit, Attempts: tt.attempts}
		if got := mayHaveWritten(r); got != tt.want {
			t.Errorf("exit %d after %d attempts: mayHaveWritten = %v, want %v", tt.exit, tt.attempts, got, tt.want)
		}
	}
}

func TestRecordConcurrentUpdates(t *testing.T) {
	tgt := clusters.Target.Clientset()
	ns := clusters.Target.Namespace(t)
	const writers = 8
	var wg sync.WaitGroup
	errs := make([]error, writers)
	for i := range writers {
		wg.Go(func() {
			// Separate stores, as separate processes would have.
			s := &RecordStore{Client: tgt, Namespace: ns, Name: "volumes-race"}
			r := Result{Transfer: Transfer{Target: Claim{"dr", fmt.Sprintf("claim-%d", i)}, Commit: "c1"}, State: StateSucceeded, Attempts: 1}
			errs[i] = s.Update(t.Context(), []Result{r})
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	vols, err := (&RecordStore{Client: tgt, Namespace: ns, Name: "volumes-race"}).Load(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(vols) != writers {
		t.Errorf("%d claims recorded, want %d: %v", len(vols), writers, vols)
	}
}

func TestRecordPrune(t *testing.T) {
	tgt := clusters.Target.Clientset()
	s := &RecordStore{Client: tgt, Namespace: clusters.Target.Namespace(t), Name: "volumes-prune"}
	var results []Result
	for _, name := range []string{"a", "b", "c"} {
		results = append(results, Result{Transfer: Transfer{Target: Claim{"dr", name}, Commit: "c1"}, State: StateSkipped, Reason: "not bound"})
	}
	// A result without a target claim is not recorded.
	results = append(results, Result{Transfer: Transfer{Source: Claim{"x", "y"}}, State: StateSkipped})
	if err := s.Update(t.Context(), results); err != nil {
		t.Fatal(err)
	}
	if err := s.Prune(t.Context(), []Claim{{"dr", "b"}, {"dr", "zz"}}); err != nil {
		t.Fatal(err)
	}
	vols, err := s.Load(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(vols) != 1 || vols["dr/b"].LastAttempt.Reason != "not bound" {
		t.Errorf("after Prune: %+v, want only dr/b", vols)
	}
}
