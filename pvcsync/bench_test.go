package pvcsync

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// BenchmarkPull measures Pull through the agent beside raw `rsync -a -e ssh`
// against OpenSSH's sshd on loopback, on the same data in the same run: a
// full copy, a 1% change, and a no-change pass, for one 2 GiB file and for
// 50,000 files of 4 KiB.
//
//	go test -run '^$' -bench BenchmarkPull -benchtime 1x -count 3 ./pvcsync/
//
// The raw baseline needs /usr/sbin/sshd (apt-get install openssh-server); it
// is skipped without it. Both use aes128-gcm@openssh.com.
func BenchmarkPull(b *testing.B) {
	datasets := []struct {
		name   string
		make   func(b *testing.B, dir string) int64
		change func(b *testing.B, dir string)
	}{
		{"2GiB-file", makeBigFile, changeBigFile},
		{"50000x4KiB", makeSmallFiles, changeSmallFiles},
	}
	for _, ds := range datasets {
		b.Run(ds.name, func(b *testing.B) {
			// One fake node per dataset; the data lives on disk under the
			// test's temp dir (/tmp here is the root filesystem, not tmpfs).
			e := newTestEnv(b, filepath.Join(b.TempDir(), "node"))
			size := ds.make(b, e.volume)
			raw := startSSHD(b)
			methods := []struct {
				name string
				pull func(ctx context.Context, dest string) (Stats, error)
			}{
				{"raw-rsync-sshd", func(ctx context.Context, dest string) (Stats, error) {
					if raw == nil {
						b.Skip("/usr/sbin/sshd is missing (apt-get install openssh-server): no raw rsync baseline")
					}
					return raw.pull(ctx, e.volume, dest)
				}},
				{"agent", func(ctx context.Context, dest string) (Stats, error) {
					return e.pull(ctx, dest, nil)
				}},
			}
			for _, m := range methods {
				dest := filepath.Join(b.TempDir(), "dest")
				b.Run(m.name+"/full", func(b *testing.B) {
					for b.Loop() {
						b.StopTimer()
						must(b, os.RemoveAll(dest))
						dropCaches()
						b.StartTimer()
						st := benchPull(b, m.pull, dest)
						b.ReportMetric(float64(size)/1e6/b.Elapsed().Seconds(), "MB/s")
						b.ReportMetric(float64(st.BytesReceived), "rx-bytes")
					}
				})
				b.Run(m.name+"/delta-1pct", func(b *testing.B) {
					for b.Loop() {
						b.StopTimer()
						ds.change(b, e.volume)
						b.StartTimer()
						st := benchPull(b, m.pull, dest)
						b.ReportMetric(float64(st.BytesReceived), "rx-bytes")
					}
				})
				b.Run(m.name+"/no-change", func(b *testing.B) {
					for b.Loop() {
						st := benchPull(b, m.pull, dest)
						b.ReportMetric(float64(st.BytesReceived), "rx-bytes")
					}
				})
			}
		})
	}
}

func benchPull(b *testing.B, pull func(context.Context, string) (Stats, error), dest string) Stats {
	st, err := pull(b.Context(), dest)
	if err != nil {
		b.Fatalf("pull: %v", err)
	}
	return st
}

// dropCaches keeps the target's page cache of a previous run from helping
// the next one; it needs root and is skipped quietly without.
func dropCaches() {
	_ = exec.Command("sync").Run()
	_ = os.WriteFile("/proc/sys/vm/drop_caches", []byte("1"), 0o200)
}

func makeBigFile(b *testing.B, dir string) int64 {
	const size = 2 << 30
	f, err := os.Create(filepath.Join(dir, "big.bin"))
	must(b, err)
	// Incompressible, fast: a seeded ChaCha8 stream.
	src := mrand.NewChaCha8([32]byte{1})
	if _, err := io.CopyN(f, src, size); err != nil {
		b.Fatal(err)
	}
	must(b, f.Close())
	return size
}

func changeBigFile(b *testing.B, dir string) {
	p := filepath.Join(dir, "big.bin")
	fi, err := os.Stat(p)
	must(b, err)
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	must(b, err)
	chunk := make([]byte, fi.Size()/100)
	_, _ = rand.Read(chunk)
	_, err = f.WriteAt(chunk, mrand.Int64N(fi.Size()-int64(len(chunk))))
	must(b, err)
	must(b, f.Close())
	bumpMtime(b, p)
}

func bumpMtime(b *testing.B, p string) {
	fi, err := os.Stat(p)
	must(b, err)
	later := fi.ModTime().Add(time.Minute)
	must(b, os.Chtimes(p, later, later))
}

const smallFiles = 50000

func makeSmallFiles(b *testing.B, dir string) int64 {
	buf := make([]byte, 4096)
	for i := range smallFiles {
		d := filepath.Join(dir, fmt.Sprintf("d%03d", i/500))
		if i%500 == 0 {
			must(b, os.Mkdir(d, 0o755))
		}
		_, _ = rand.Read(buf)
		must(b, os.WriteFile(filepath.Join(d, fmt.Sprintf("f%05d", i)), buf, 0o644))
	}
	return smallFiles * 4096
}

func changeSmallFiles(b *testing.B, dir string) {
	buf := make([]byte, 4096)
	for range smallFiles / 100 {
		i := mrand.IntN(smallFiles)
		p := filepath.Join(dir, fmt.Sprintf("d%03d", i/500), fmt.Sprintf("f%05d", i))
		_, _ = rand.Read(buf)
		must(b, os.WriteFile(p, buf, 0o644))
		bumpMtime(b, p)
	}
}

// sshd is OpenSSH's server, started for the benchmark only: its own config,
// host key and port, one authorized key, in the foreground.
type sshd struct {
	port    int
	keyDir  string // id_ed25519 and known_hosts for the client
	sshPath string
}

func startSSHD(b *testing.B) *sshd {
	const bin = "/usr/sbin/sshd"
	if _, err := os.Stat(bin); err != nil {
		return nil
	}
	dir := b.TempDir()
	host, hostPEM := newKeyPEM(b)
	client, clientPEM := newKeyPEM(b)
	must(b, os.WriteFile(filepath.Join(dir, "host_key"), hostPEM, 0o600))
	must(b, os.WriteFile(filepath.Join(dir, "authorized_keys"), ssh.MarshalAuthorizedKey(client.PublicKey()), 0o600))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(b, err)
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	cfg := fmt.Sprintf(`ListenAddress 127.0.0.1
Port %d
HostKey %s
AuthorizedKeysFile %s
PidFile none
UsePAM no
StrictModes no
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
Ciphers aes128-gcm@openssh.com,aes256-gcm@openssh.com,chacha20-poly1305@openssh.com
`, port, filepath.Join(dir, "host_key"), filepath.Join(dir, "authorized_keys"))
	must(b, os.WriteFile(filepath.Join(dir, "sshd_config"), []byte(cfg), 0o600))
	must(b, os.MkdirAll("/run/sshd", 0o755)) // privilege separation directory
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "-D", "-e", "-f", filepath.Join(dir, "sshd_config"))
	var logs bytes.Buffer
	cmd.Stderr = &logs
	must(b, cmd.Start())
	b.Cleanup(func() { cancel(); _ = cmd.Wait() })

	keyDir := filepath.Join(dir, "client")
	must(b, os.MkdirAll(keyDir, 0o700))
	must(b, os.WriteFile(filepath.Join(keyDir, KeyFile), clientPEM, 0o600))
	kh, err := knownHostsFor(host.PublicKey(), []string{net.JoinHostPort("127.0.0.1", strconv.Itoa(port))})
	must(b, err)
	must(b, os.WriteFile(filepath.Join(keyDir, KnownHostsFile), kh, 0o644))
	for i := 0; ; i++ {
		c, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err == nil {
			c.Close()
			break
		}
		if i > 100 {
			b.Fatalf("sshd did not start: %s", logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	sshPath, err := exec.LookPath("ssh")
	must(b, err)
	return &sshd{port: port, keyDir: keyDir, sshPath: sshPath}
}

// pull is the baseline: plain `rsync -a -e ssh` with the same cipher.
func (s *sshd) pull(ctx context.Context, src, dest string) (Stats, error) {
	e := fmt.Sprintf("%s -F /dev/null -i %s -o IdentitiesOnly=yes -o UserKnownHostsFile=%s -o GlobalKnownHostsFile=/dev/null -o StrictHostKeyChecking=yes -o BatchMode=yes -c aes128-gcm@openssh.com -p %d",
		s.sshPath, filepath.Join(s.keyDir, KeyFile), filepath.Join(s.keyDir, KnownHostsFile), s.port)
	cmd := exec.CommandContext(ctx, "rsync", "-a", "--stats", "--no-human-readable", "-e", e, "root@127.0.0.1:"+withSlash(src), withSlash(dest))
	cmd.Env = pullEnv()
	out, err := cmd.CombinedOutput()
	if err != nil {
		return Stats{}, fmt.Errorf("raw rsync: %w: %s", err, out)
	}
	st, _ := ParseStats(out)
	return st, nil
}

func newKeyPEM(b *testing.B) (ssh.Signer, []byte) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	must(b, err)
	s, err := ssh.NewSignerFromKey(priv)
	must(b, err)
	block, err := ssh.MarshalPrivateKey(priv, "bench")
	must(b, err)
	return s, pem.EncodeToMemory(block)
}
