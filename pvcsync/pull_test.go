package pvcsync

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
)

// entry is what a copy must keep of one file.
type entry struct {
	Mode     fs.FileMode
	UID, GID uint32
	Size     int64
	MTime    int64 // non-directories
	SHA256   string
	Link     string            // symlink target
	LinkedTo string            // first path (sorted) sharing the inode, for hard links
	Xattrs   map[string]string // user.*
}

// walkTree describes every file under root.
func walkTree(t testing.TB, root string) map[string]entry {
	t.Helper()
	tree := map[string]entry{}
	inodes := map[uint64][]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		e := entry{Mode: fi.Mode(), UID: st.Uid, GID: st.Gid, Xattrs: userXattrs(t, p)}
		switch {
		case fi.Mode().IsRegular():
			e.Size = fi.Size()
			e.SHA256 = hashFile(t, p)
			if st.Nlink > 1 {
				inodes[st.Ino] = append(inodes[st.Ino], rel)
			}
		case fi.Mode()&fs.ModeSymlink != 0:
			e.Link, _ = os.Readlink(p)
		}
		if !fi.IsDir() {
			e.MTime = fi.ModTime().Unix()
		}
		tree[rel] = e
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, paths := range inodes {
		sort.Strings(paths)
		for _, p := range paths {
			e := tree[p]
			e.LinkedTo = paths[0]
			tree[p] = e
		}
	}
	return tree
}

func userXattrs(t testing.TB, p string) map[string]string {
	sz, err := unix.Llistxattr(p, nil)
	if err != nil || sz == 0 {
		return nil
	}
	buf := make([]byte, sz)
	sz, err = unix.Llistxattr(p, buf)
	if err != nil {
		t.Fatalf("listxattr %s: %v", p, err)
	}
	out := map[string]string{}
	for _, name := range strings.Split(strings.TrimRight(string(buf[:sz]), "\x00"), "\x00") {
		if !strings.HasPrefix(name, "user.") {
			continue
		}
		v := make([]byte, 4096)
		n, err := unix.Lgetxattr(p, name, v)
		if err != nil {
			t.Fatalf("getxattr %s %s: %v", p, name, err)
		}
		out[name] = string(v[:n])
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

func hashFile(t testing.TB, p string) string {
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func writeRandom(t testing.TB, p string, size int64) {
	t.Helper()
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.CopyN(f, rand.Reader, size); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func allocated(t testing.TB, p string) int64 {
	var st syscall.Stat_t
	must(t, syscall.Stat(p, &st))
	return st.Blocks * 512
}

// TestPullFidelity: modes, numeric owners, hard links, symlinks, xattrs,
// specials, sparse files and deletions arrive intact, through a volume path
// with characters a shell would interpret.
func TestPullFidelity(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown to arbitrary ids")
	}
	e := newTestEnv(t, filepath.Join(t.TempDir(), "node $dir; with spaces"))
	src := e.volume
	must(t, os.WriteFile(filepath.Join(src, "a.txt"), []byte("hello\n"), 0o640))
	must(t, os.Chown(filepath.Join(src, "a.txt"), 1234, 5678))
	must(t, os.Mkdir(filepath.Join(src, "sub"), 0o750))
	must(t, os.Chown(filepath.Join(src, "sub"), 4242, 4343))
	must(t, os.WriteFile(filepath.Join(src, "sub", "setuid"), []byte("#!/bin/true\n"), 0o755))
	must(t, os.Chmod(filepath.Join(src, "sub", "setuid"), 0o4755|fs.ModeSetuid))
	must(t, os.Chmod(filepath.Join(src, "sub", "setuid"), 0o755|fs.ModeSetuid))
	must(t, os.WriteFile(filepath.Join(src, "h1"), []byte("linked"), 0o600))
	must(t, os.Link(filepath.Join(src, "h1"), filepath.Join(src, "sub", "h2")))
	must(t, os.Symlink("a.txt", filepath.Join(src, "rel-link")))
	must(t, os.Symlink("/etc/passwd", filepath.Join(src, "abs-link")))
	must(t, os.Lchown(filepath.Join(src, "abs-link"), 777, 888))
	must(t, unix.Mkfifo(filepath.Join(src, "fifo"), 0o620))
	must(t, os.WriteFile(filepath.Join(src, "we ird $name;&'.txt"), []byte("x"), 0o644))
	must(t, os.WriteFile(filepath.Join(src, "gone"), []byte("to be deleted"), 0o644))
	sparse := filepath.Join(src, "sparse.img")
	f, err := os.Create(sparse)
	must(t, err)
	_, err = f.WriteAt(make([]byte, 4096), 0)
	must(t, err)
	_, err = f.WriteAt([]byte("data in the middle"), 16<<20)
	must(t, err)
	must(t, f.Truncate(32<<20))
	must(t, f.Close())
	if err := unix.Lsetxattr(filepath.Join(src, "a.txt"), "user.dr-syncer.test", []byte("value"), 0); err != nil {
		t.Skipf("the filesystem of %s refuses user xattrs (%v): cannot test -X", src, err)
	}
	must(t, unix.Lsetxattr(filepath.Join(src, "sub"), "user.dir", []byte("d"), 0))
	srcAlloc := allocated(t, sparse)

	dest := filepath.Join(t.TempDir(), "target")
	// Existing content of the target that is not in the source goes.
	must(t, os.MkdirAll(dest, 0o755))
	must(t, os.WriteFile(filepath.Join(dest, "stale"), []byte("old"), 0o644))
	var progress []Progress
	stats, err := e.pull(t.Context(), dest, func(o *PullOptions) {
		o.Sparse = true
		o.Progress = func(p Progress) { progress = append(progress, p) }
	})
	if err != nil {
		t.Fatalf("Pull: %v\nagent log:\n%s", err, e.logs.String())
	}
	if d := cmp.Diff(walkTree(t, src), walkTree(t, dest)); d != "" {
		t.Fatalf("trees differ (-source +target):\n%s", d)
	}
	if got := allocated(t, filepath.Join(dest, "sparse.img")); got > srcAlloc+64<<10 {
		t.Errorf("sparse file: %d bytes allocated on the target, %d on the source", got, srcAlloc)
	}
	if stats.Files < 10 || stats.TotalSize < 32<<20 {
		t.Errorf("stats = %+v, want the whole tree counted", stats)
	}
	if len(progress) == 0 || progress[len(progress)-1].ToCheck != 0 || progress[len(progress)-1].Bytes < 32<<20 {
		t.Errorf("progress = %+v, want updates ending with nothing left to check", progress)
	}

	// Deletions and changes of metadata only.
	must(t, os.Remove(filepath.Join(src, "gone")))
	must(t, os.Chmod(filepath.Join(src, "a.txt"), 0o604))
	must(t, os.Chown(filepath.Join(src, "h1"), 31337, 31338))
	if _, err := e.pull(t.Context(), dest, nil); err != nil {
		t.Fatalf("second Pull: %v", err)
	}
	if d := cmp.Diff(walkTree(t, src), walkTree(t, dest)); d != "" {
		t.Fatalf("after deletion, trees differ (-source +target):\n%s", d)
	}
}

// TestPullDelta: after a full copy, a 1% change moves about 1% of the bytes.
func TestPullDelta(t *testing.T) {
	for _, inPlace := range []bool{false, true} {
		t.Run(map[bool]string{false: "temp-file", true: "inplace"}[inPlace], func(t *testing.T) {
			e := newTestEnv(t, "")
			const size = 64 << 20
			file := filepath.Join(e.volume, "data.bin")
			writeRandom(t, file, size)
			dest := t.TempDir()
			opt := func(o *PullOptions) { o.InPlace = inPlace }
			full, err := e.pull(t.Context(), dest, opt)
			if err != nil {
				t.Fatalf("full Pull: %v", err)
			}
			if full.BytesReceived < size || full.LiteralBytes != size || full.FilesTransferred != 1 {
				t.Errorf("full copy stats = %+v, want all %d bytes received", full, size)
			}
			// Change 1% in the middle.
			f, err := os.OpenFile(file, os.O_WRONLY, 0)
			must(t, err)
			chunk := make([]byte, size/100)
			_, _ = rand.Read(chunk)
			_, err = f.WriteAt(chunk, size/2)
			must(t, err)
			must(t, f.Close())
			// rsync's quick check compares size and mtime: within the
			// second of the full copy, the change would go unseen.
			later := time.Now().Add(time.Hour)
			must(t, os.Chtimes(file, later, later))
			delta, err := e.pull(t.Context(), dest, opt)
			if err != nil {
				t.Fatalf("delta Pull: %v", err)
			}
			t.Logf("delta: %+v", delta)
			if delta.BytesReceived > size/20 || delta.MatchedBytes < size*9/10 {
				t.Errorf("delta stats = %+v: want well under %d bytes received (1%% changed)", delta, size)
			}
			if hashFile(t, file) != hashFile(t, filepath.Join(dest, "data.bin")) {
				t.Errorf("content differs after the delta pass")
			}
			same, err := e.pull(t.Context(), dest, opt)
			if err != nil {
				t.Fatalf("no-change Pull: %v", err)
			}
			if same.FilesTransferred != 0 || same.BytesReceived > 64<<10 {
				t.Errorf("no-change stats = %+v, want nothing transferred", same)
			}
		})
	}
}

// TestPullCancelThenResume: a pull cancelled midway fails, leaves no process
// behind, and the next pull completes the copy.
func TestPullCancelThenResume(t *testing.T) {
	e := newTestEnv(t, "")
	const size = 256 << 20
	writeRandom(t, filepath.Join(e.volume, "big.bin"), size)
	writeRandom(t, filepath.Join(e.volume, "small.bin"), 1<<20)
	dest := t.TempDir()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go func() {
		// Cancel once some data has landed.
		for ctx.Err() == nil {
			var n int64
			_ = filepath.WalkDir(dest, func(p string, d fs.DirEntry, err error) error {
				if err == nil && d.Type().IsRegular() {
					if fi, err := d.Info(); err == nil {
						n += fi.Size()
					}
				}
				return nil
			})
			if n > 8<<20 {
				cancel()
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	start := time.Now()
	_, err := e.pull(ctx, dest, nil)
	if err == nil {
		t.Fatal("cancelled Pull succeeded")
	}
	if !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled Pull: %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("cancelled Pull took %v to return", d)
	}
	stats, err := e.pull(t.Context(), dest, nil)
	if err != nil {
		t.Fatalf("Pull after the cancelled one: %v", err)
	}
	t.Logf("resumed: %+v", stats)
	if d := cmp.Diff(walkTree(t, e.volume), walkTree(t, dest)); d != "" {
		t.Fatalf("trees differ after resume (-source +target):\n%s", d)
	}
	if stats.MatchedBytes == 0 {
		t.Errorf("resume matched no data: the partial file of the cancelled run was not kept (--partial)")
	}
}

// TestPullFailures: a pull that cannot authenticate the agent or reach it
// fails; it never reports success.
func TestPullFailures(t *testing.T) {
	e := newTestEnv(t, "")
	must(t, os.WriteFile(filepath.Join(e.volume, "f"), []byte("x"), 0o644))

	wrongHost := t.TempDir()
	c, err := IssueCredentials(e.ca, newSigner(t).PublicKey(), []string{e.agent.String()}, e.volume, time.Hour)
	must(t, err)
	must(t, WriteCredentials(wrongHost, c))

	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	closedPort := l.Addr().(*net.TCPAddr).Port
	l.Close()

	tests := []struct {
		name string
		mod  func(*PullOptions)
	}{
		{"wrong host key", func(o *PullOptions) { o.KeyDir = wrongHost }},
		{"unreachable agent", func(o *PullOptions) { o.Agent.Port = closedPort }},
		{"certificate for another volume", func(o *PullOptions) { o.KeyDir = e.credentials(t, e.other, time.Hour) }},
		{"path outside the volumes", func(o *PullOptions) { o.Path = "/etc"; o.KeyDir = e.credentials(t, "/etc", time.Hour) }},
		{"missing key", func(o *PullOptions) { o.KeyDir = t.TempDir() }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dest := t.TempDir()
			_, err := e.pull(t.Context(), dest, tt.mod)
			var re *RsyncError
			if !errors.As(err, &re) {
				t.Fatalf("Pull: %v, want an *RsyncError", err)
			}
			if re.ExitCode == 0 || re.Message == "" {
				t.Errorf("RsyncError = %+v, want a code and a message", re)
			}
			if !strings.Contains(err.Error(), e.agent.Host) {
				t.Errorf("error %q does not name the agent", err)
			}
			if _, err := os.Stat(filepath.Join(dest, "f")); err == nil {
				t.Errorf("data arrived despite the failure")
			}
		})
	}
}

func TestPullArgs(t *testing.T) {
	o := PullOptions{Agent: Endpoint{Host: "10.0.0.5", Port: 2222}, Path: "/var/lib/kubelet/pods/u/volumes/kubernetes.io~csi/pv/mount", Dest: "/data", KeyDir: "/keys", Sparse: true, InPlace: true, SSHPath: "/usr/bin/ssh"}
	args, err := o.rsyncArgs()
	must(t, err)
	got := strings.Join(args, "\n")
	for _, want := range []string{
		"-aHAX", "--numeric-ids", "--delete", "--partial", "--sparse", "--inplace", "--stats",
		"-F /dev/null", "-i /keys/id_ed25519", "CertificateFile=/keys/id_ed25519-cert.pub",
		"IdentitiesOnly=yes", "UserKnownHostsFile=/keys/known_hosts", "GlobalKnownHostsFile=/dev/null",
		"StrictHostKeyChecking=yes", "BatchMode=yes", "PasswordAuthentication=no", "ForwardAgent=no",
		"ClearAllForwardings=yes", "-c aes128-gcm@openssh.com,aes256-gcm@openssh.com,chacha20-poly1305@openssh.com",
		"-p 2222", "10.0.0.5:/var/lib/kubelet/pods/u/volumes/kubernetes.io~csi/pv/mount/", "/data/",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("rsync argv lacks %q:\n%s", want, got)
		}
	}
	o.Sparse, o.InPlace = false, false
	args, err = o.rsyncArgs()
	must(t, err)
	if got := strings.Join(args, " "); strings.Contains(got, "--sparse") || strings.Contains(got, "--inplace") {
		t.Errorf("argv has --sparse/--inplace while off: %s", got)
	}
}
