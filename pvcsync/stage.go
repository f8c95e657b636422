package pvcsync

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// Stage runs the transfers of one commit: each with fresh credentials, at
// most Concurrency at once, failed attempts retried with exponential
// backoff, and every outcome recorded.
type Stage struct {
	Runner Runner
	// Credentials makes the credentials of one run of one transfer (a key
	// and a certificate valid for that run and that path only).
	Credentials func(t Transfer) (Credentials, error)
	// Recorder, when set, records the results (Update is called once, with
	// every result, after the last copy).
	Recorder Recorder
	// Concurrency defaults to 1; Retries is the number of attempts after
	// the first (0: none).
	Concurrency int
	Retries     int
	// Backoff is the wait before the first retry (default 5 s), doubled
	// for each further one up to MaxBackoff (default 2 min).
	Backoff, MaxBackoff time.Duration
	// Progress, when set, receives rsync's progress of each transfer.
	Progress func(t Transfer, p Progress)
	Logger   *slog.Logger
}

// Recorder keeps the results of the copies (RecordStore in the target).
type Recorder interface {
	Update(ctx context.Context, results []Result) error
}

// Run copies every transfer and returns one result per transfer, then the
// skipped ones, in the order given. A copy that fails is a Failed result,
// not an error: the error is for what stops the stage itself (a cancelled
// context, a record that cannot be written).
func (s *Stage) Run(ctx context.Context, transfers []Transfer, skipped []Result) ([]Result, error) {
	results := make([]Result, len(transfers), len(transfers)+len(skipped))
	sem := make(chan struct{}, max(1, s.Concurrency))
	var wg sync.WaitGroup
	for i, t := range transfers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
				defer func() { <-sem }()
				results[i] = s.copy(ctx, t)
			case <-ctx.Done():
				results[i] = Result{Transfer: t, State: StateFailed, Reason: fmt.Sprintf("not started: %v", context.Cause(ctx)), ExitCode: -1}
			}
		}()
	}
	wg.Wait()
	results = append(results, skipped...)
	if ctx.Err() != nil {
		// Record what happened even so: a copy cut short is a fact the
		// status must show.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		ctx = rctx
	}
	if s.Recorder != nil {
		if err := s.Recorder.Update(ctx, results); err != nil {
			return results, fmt.Errorf("recording the PVC copies: %w", err)
		}
	}
	return results, nil
}

// copy makes the attempts of one transfer.
func (s *Stage) copy(ctx context.Context, t Transfer) Result {
	log := cmp.Or(s.Logger, slog.New(slog.DiscardHandler)).With("pvc", t.Target.String(), "source", t.Source.String(), "node", t.Node, "commit", t.Commit)
	res := Result{Transfer: t, Started: time.Now(), ExitCode: -1}
	backoff := cmp.Or(s.Backoff, 5*time.Second)
	for attempt := 0; ; attempt++ {
		res.Attempts = attempt + 1
		stats, err := s.attempt(ctx, t)
		res.Duration = time.Since(res.Started)
		if err == nil {
			res.State, res.Reason, res.Stats, res.ExitCode = StateSucceeded, "", stats, 0
			log.Info("volume copied", "attempts", res.Attempts, "duration", res.Duration, "bytes", stats.BytesReceived, "files", stats.Files)
			return res
		}
		res.State, res.Reason = StateFailed, err.Error()
		if re := (*RsyncError)(nil); errors.As(err, &re) {
			res.ExitCode = re.ExitCode
		}
		if attempt >= s.Retries || ctx.Err() != nil {
			log.Error("volume copy failed", "attempts", res.Attempts, "error", err)
			return res
		}
		log.Warn("volume copy failed, retrying", "attempt", res.Attempts, "in", backoff, "error", err)
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			res.Reason = fmt.Sprintf("%s (retry abandoned: %v)", res.Reason, context.Cause(ctx))
			return res
		}
		backoff = min(2*backoff, cmp.Or(s.MaxBackoff, 2*time.Minute))
	}
}

func (s *Stage) attempt(ctx context.Context, t Transfer) (Stats, error) {
	creds, err := s.Credentials(t)
	if err != nil {
		return Stats{}, fmt.Errorf("credentials for %s: %w", t.Target, err)
	}
	var progress func(Progress)
	if s.Progress != nil {
		progress = func(p Progress) { s.Progress(t, p) }
	}
	return s.Runner.Run(ctx, t, creds, progress)
}
