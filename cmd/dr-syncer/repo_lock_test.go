package main

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestLockFileWaitsForTheHolder(t *testing.T) {
	path := filepath.Join(t.TempDir(), "clone.lock")
	unlock, err := lockFile(t.Context(), path, func() { t.Error("the first lock must not wait") })
	require.NoError(t, err)

	// A second holder (flock locks belong to the open file: a second open
	// in this process is refused as another process would be) waits...
	waited := make(chan struct{})
	got := make(chan error, 1)
	go func() {
		unlock2, err := lockFile(t.Context(), path, func() { close(waited) })
		if err == nil {
			unlock2()
		}
		got <- err
	}()
	select {
	case <-waited:
	case <-time.After(5 * time.Second):
		t.Fatal("the second lock did not wait")
	}
	select {
	case err := <-got:
		t.Fatalf("the second lock was taken while held: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	// ... until the first lets go.
	unlock()
	select {
	case err := <-got:
		require.NoError(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("the second lock was not taken after the first let go")
	}

	// Waiting ends with the context.
	unlock, err = lockFile(t.Context(), path, func() {})
	require.NoError(t, err)
	defer unlock()
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	_, err = lockFile(ctx, path, func() {})
	require.ErrorIs(t, err, context.DeadlineExceeded)
}
