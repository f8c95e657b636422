package pvcsync

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/dr-syncer/dr-syncer/internal/syncbuf"
)

// testEnv is a fake node: a kubelet directory with one CSI volume, an agent
// serving it on 127.0.0.1, the agents' user CA, and credentials for a pull.
type testEnv struct {
	kubelet string
	volume  string // .../volumes/kubernetes.io~csi/pv-1/mount
	other   string // a second volume of another pod
	extra   string // an extra root (hostPath PV)
	agent   Endpoint
	hostKey ssh.Signer
	ca      ssh.Signer
	admin   ssh.Signer // in AuthorizedKeys
	keyDir  string     // credentials for volume
	logs    *syncbuf.Buffer
}

func newSigner(t testing.TB) ssh.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// newTestEnv starts an agent; root is where the fake node's directories go
// (t.TempDir() when empty).
func newTestEnv(t testing.TB, root string) *testEnv {
	t.Helper()
	if root == "" {
		root = t.TempDir()
	}
	e := &testEnv{
		kubelet: filepath.Join(root, "kubelet"),
		hostKey: newSigner(t),
		ca:      newSigner(t),
		admin:   newSigner(t),
		logs:    &syncbuf.Buffer{},
	}
	e.volume = filepath.Join(e.kubelet, "pods", "0b3c5e1a-uid-1", "volumes", "kubernetes.io~csi", "pv-1", "mount")
	e.other = filepath.Join(e.kubelet, "pods", "7f00aa00-uid-2", "volumes", "kubernetes.io~csi", "pv-2", "mount")
	e.extra = filepath.Join(root, "hostpath-pvs")
	for _, d := range []string{e.volume, e.other, e.extra} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	agent, err := NewAgent(AgentConfig{
		HostKey:        e.hostKey,
		AuthorizedKeys: []ssh.PublicKey{e.admin.PublicKey()},
		UserCAs:        []ssh.PublicKey{e.ca.PublicKey()},
		KubeletDir:     e.kubelet,
		ExtraRoots:     []string{e.extra},
		Logger:         slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.agent = Endpoint{Host: "127.0.0.1", Port: l.Addr().(*net.TCPAddr).Port}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- agent.Serve(ctx, l) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-served:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("Serve did not return after its context ended")
		}
	})
	e.keyDir = e.credentials(t, e.volume, time.Hour)
	return e
}

// credentials issues credentials for path and writes them to a new
// directory.
func (e *testEnv) credentials(t testing.TB, path string, ttl time.Duration) string {
	t.Helper()
	c, err := IssueCredentials(e.ca, e.hostKey.PublicKey(), []string{e.agent.String()}, path, ttl)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := WriteCredentials(dir, c); err != nil {
		t.Fatal(err)
	}
	return dir
}

func (e *testEnv) pull(ctx context.Context, dest string, mod func(*PullOptions)) (Stats, error) {
	o := PullOptions{Agent: e.agent, Path: e.volume, Dest: dest, KeyDir: e.keyDir}
	if mod != nil {
		mod(&o)
	}
	return Pull(ctx, o)
}

// logsContain waits a little for a log line with all the words: the agent
// logs from its own goroutines.
func (e *testEnv) logsContain(words ...string) bool {
	deadline := time.Now().Add(3 * time.Second)
	for {
		for _, line := range strings.Split(e.logs.String(), "\n") {
			all := true
			for _, w := range words {
				if !strings.Contains(line, w) {
					all = false
					break
				}
			}
			if all {
				return true
			}
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}
