package pvcsync

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// BenchmarkPull measures Pull through the agent beside rsync over OpenSSH's
// sshd on loopback, on the same data in the same run: a full copy, a 1%
// change and a no-change pass, for one 2 GiB file and for 50,000 files of
// 4 KiB; and the cost of --sparse on the 2 GiB file and on a 2 GiB sparse
// file holding 10% data.
//
//	go test -run '^$' -bench BenchmarkPull -benchtime 1x -count 3 ./pvcsync/
//
// Methods, each pulling into a destination of its own:
//
//   - raw-a: plain `rsync -a -e ssh` against sshd: the baseline of the
//     issue's goals;
//   - raw-flags: rsync with Pull's exact flags (rsyncFlags) against sshd: the
//     same work as the agent's, so agent/raw-flags is the agent's own
//     overhead;
//   - agent: Pull through an Agent; agent-sparse: the same with Sparse.
//
// Every sub-benchmark runs all its methods one after the other, in an order
// that rotates from one run to the next (with -count 3, each method comes
// first, second and third once), and reports each method's figures and the
// ratios of the same run. Before each timed pull: full copies drop the page
// cache (root only; skipped quietly without); delta passes read the source
// and that method's destination once, so every method starts warm; all
// passes sync dirty pages first.
//
// The agent runs in a process of its own (this test binary, re-executed in
// its own session), as it does on a node: in the test process, it would
// share a CPU scheduling group (Linux autogroup) with the client and with
// whatever else the test process runs, while sshd's sessions get groups of
// their own, and on a busy machine that alone changes the times by 2–3×.
//
// Figures per method (units end in the method's name): s (wall seconds),
// rx-B (bytes received), cpu-s (CPU seconds of client and server together:
// rsync, ssh, and sshd or the agent with its rsync; immune to how busy the
// machine is), srv-cpu-s (the server side alone); for full copies MB/s; for
// the sparse file alloc-MB (the destination's allocated size). Ratios:
// x-time-agent/raw-a, x-time-agent/raw-flags, x-rx-… (bytes), x-cpu-…, and
// x-tput-… for full copies.
//
// Set DRSYNCER_BENCH_AGENT_CPUPROFILE=file to write a CPU profile of each
// agent process (to file.<pid>). The raw baselines need /usr/sbin/sshd (apt-get install
// openssh-server); without it they are skipped and only the agent runs.
// All use aes128-gcm@openssh.com.
func BenchmarkPull(b *testing.B) {
	b.Run("2GiB-file", func(b *testing.B) {
		bf := newBenchFixture(b)
		size := makeBigFile(b, bf.volume)
		bf.phase(b, "full", size, changeNone, "raw-a", "raw-flags", "agent", "agent-sparse")
		bf.phase(b, "delta-1pct", size, changeBigFile, "raw-a", "raw-flags", "agent")
		bf.phase(b, "no-change", size, changeNone, "raw-a", "raw-flags", "agent")
	})
	b.Run("2GiB-sparse-10pct", func(b *testing.B) {
		bf := newBenchFixture(b)
		size := makeSparseFile(b, bf.volume)
		bf.phase(b, "full", size, changeNone, "raw-flags", "agent", "agent-sparse")
	})
	b.Run("50000x4KiB", func(b *testing.B) {
		bf := newBenchFixture(b)
		size := makeSmallFiles(b, bf.volume)
		bf.phase(b, "full", size, changeNone, "raw-a", "raw-flags", "agent")
		bf.phase(b, "delta-1pct", size, changeSmallFiles, "raw-a", "raw-flags", "agent")
		bf.phase(b, "no-change", size, changeNone, "raw-a", "raw-flags", "agent")
	})
}

// benchFixture is one dataset: a fake node's volume, an agent process
// serving it, an sshd, and one destination per method.
type benchFixture struct {
	volume string
	agent  *benchAgent
	raw    *sshd
	dests  map[string]string
	synced map[string]bool
}

func newBenchFixture(b *testing.B) *benchFixture {
	root := b.TempDir() // on disk: /tmp here is the root filesystem, not tmpfs
	bf := &benchFixture{
		volume: filepath.Join(root, "kubelet", "pods", "0b3c5e1a-uid-1", "volumes", "kubernetes.io~csi", "pv-1", "mount"),
		dests:  map[string]string{},
		synced: map[string]bool{},
	}
	must(b, os.MkdirAll(bf.volume, 0o755))
	bf.agent = startBenchAgent(b, filepath.Join(root, "kubelet"), bf.volume)
	bf.raw = startSSHD(b)
	return bf
}

// pull runs one pull of method m into its destination.
func (bf *benchFixture) pull(ctx context.Context, m string) (Stats, error) {
	dest, ok := bf.dests[m]
	if !ok {
		dest = filepath.Join(filepath.Dir(filepath.Dir(bf.volume)), "dest-"+m)
		bf.dests[m] = dest
	}
	switch m {
	case "raw-a":
		return bf.raw.pull(ctx, bf.volume, dest, "-a", "--stats", "--no-human-readable")
	case "raw-flags":
		return bf.raw.pull(ctx, bf.volume, dest, rsyncFlags...)
	case "agent", "agent-sparse":
		return Pull(ctx, PullOptions{Agent: bf.agent.endpoint, Path: bf.volume, Dest: dest,
			KeyDir: bf.agent.keyDir, Sparse: m == "agent-sparse"})
	}
	panic("unknown method " + m)
}

// server is the pid of the process serving method m (sshd or the agent):
// its CPU time, and that of the children it has reaped, is the server side.
func (bf *benchFixture) server(m string) int {
	if strings.HasPrefix(m, "raw") {
		return bf.raw.pid
	}
	return bf.agent.pid
}

// rotations counts the runs of each sub-benchmark, across -count.
var rotations = map[string]int{}

type phaseFigures struct{ secs, rx, cpu, srvCPU, alloc float64 }

// phase is one sub-benchmark: each iteration changes the source (change),
// then pulls with every method in turn.
func (bf *benchFixture) phase(b *testing.B, name string, size int64, change func(*testing.B, string), methods ...string) {
	b.Run(name, func(b *testing.B) {
		if bf.raw == nil {
			methods = slices.DeleteFunc(slices.Clone(methods), func(m string) bool { return strings.HasPrefix(m, "raw") })
		}
		sum := map[string]*phaseFigures{}
		for _, m := range methods {
			sum[m] = &phaseFigures{}
		}
		n := 0
		for b.Loop() {
			b.StopTimer()
			key := b.Name()
			k := rotations[key]
			rotations[key]++
			order := append(slices.Clone(methods[k%len(methods):]), methods[:k%len(methods)]...)
			for _, m := range order {
				if name != "full" && !bf.synced[m] {
					_ = benchPull(b, bf, m) // an earlier phase was filtered out
				}
			}
			change(b, bf.volume)
			for _, m := range order {
				switch name {
				case "full":
					must(b, os.RemoveAll(bf.dests[m]))
					dropCaches()
				case "delta-1pct":
					warm(b, bf.volume)
					if d, ok := bf.dests[m]; ok {
						warm(b, d)
					}
					syncDisks()
				default:
					syncDisks()
				}
				srv0 := procCPU(bf.server(m))
				cli0 := childrenCPU()
				b.StartTimer()
				t0 := time.Now()
				st := benchPull(b, bf, m)
				secs := time.Since(t0).Seconds()
				b.StopTimer()
				srv := settledCPU(bf.server(m)) - srv0
				f := sum[m]
				f.secs += secs
				f.rx += float64(st.BytesReceived)
				f.srvCPU += srv
				f.cpu += srv + childrenCPU() - cli0
				if name == "full" {
					f.alloc += float64(allocatedTree(b, bf.dests[m])) / 1e6
				}
				bf.synced[m] = true
			}
			n++
			b.StartTimer()
		}
		for _, m := range methods {
			f := sum[m]
			f.secs /= float64(n)
			f.rx /= float64(n)
			f.cpu /= float64(n)
			f.srvCPU /= float64(n)
			f.alloc /= float64(n)
			b.ReportMetric(f.secs, "s-"+m)
			b.ReportMetric(f.rx, "rx-B-"+m)
			b.ReportMetric(f.cpu, "cpu-s-"+m)
			b.ReportMetric(f.srvCPU, "srv-cpu-s-"+m)
			if name == "full" {
				b.ReportMetric(float64(size)/1e6/f.secs, "MB/s-"+m)
				if strings.Contains(b.Name(), "sparse") {
					b.ReportMetric(f.alloc, "alloc-MB-"+m)
				}
			}
		}
		ratio := func(unit, x, y string, v func(*phaseFigures) float64) {
			if sum[x] != nil && sum[y] != nil && v(sum[y]) > 0 {
				b.ReportMetric(v(sum[x])/v(sum[y]), unit+"-"+x+"/"+y)
			}
		}
		for _, pair := range [][2]string{{"agent", "raw-a"}, {"agent", "raw-flags"}, {"raw-flags", "raw-a"}, {"agent-sparse", "agent"}} {
			x, y := pair[0], pair[1]
			ratio("x-time", x, y, func(f *phaseFigures) float64 { return f.secs })
			ratio("x-rx", x, y, func(f *phaseFigures) float64 { return f.rx })
			ratio("x-cpu", x, y, func(f *phaseFigures) float64 { return f.cpu })
			if name == "full" {
				ratio("x-tput", x, y, func(f *phaseFigures) float64 { return 1 / f.secs })
			}
		}
	})
}

func benchPull(b *testing.B, bf *benchFixture, m string) Stats {
	st, err := bf.pull(b.Context(), m)
	if err != nil {
		b.Fatalf("%s: pull: %v", m, err)
	}
	return st
}

func changeNone(*testing.B, string) {}

// dropCaches keeps the page cache of a previous run from helping the next
// one; it needs root and is skipped quietly without.
func dropCaches() {
	syncDisks()
	_ = os.WriteFile("/proc/sys/vm/drop_caches", []byte("1"), 0o200)
}

func syncDisks() { _ = exec.Command("sync").Run() }

// warm reads every file below dir once, into the page cache.
func warm(b *testing.B, dir string) {
	buf := make([]byte, 1<<20)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.CopyBuffer(io.Discard, f, buf)
		return err
	})
	must(b, err)
}

// allocatedTree is the disk space taken by the files below dir.
func allocatedTree(b *testing.B, dir string) int64 {
	var n int64
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		var st syscall.Stat_t
		if err := syscall.Lstat(p, &st); err != nil {
			return err
		}
		n += st.Blocks * 512
		return nil
	})
	must(b, err)
	return n
}

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat's times (100 on every
// Linux architecture Go supports).
const clockTicks = 100

// procCPU is the CPU time of process pid and of the children it has reaped,
// in seconds (0 if unreadable).
func procCPU(pid int) float64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command, which is in parentheses and may hold blanks.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(data[i+1:]))
	// utime, stime, cutime, cstime are fields 14–17; f[0] is field 3.
	var t float64
	for _, s := range f[11:15] {
		v, _ := strconv.ParseFloat(s, 64)
		t += v
	}
	return t / clockTicks
}

// settledCPU is procCPU once the server has reaped the processes of the pull
// that just ended (they end a little after the client): sshd's connection
// process, the agent's rsync.
func settledCPU(pid int) float64 {
	for range 250 {
		if !hasChildren(pid) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	return procCPU(pid)
}

func hasChildren(pid int) bool {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	for _, t := range tasks {
		if c, err := os.ReadFile(t); err == nil && len(bytes.TrimSpace(c)) > 0 {
			return true
		}
	}
	return false
}

// childrenCPU is the CPU time of this process's reaped children: the
// client's rsync (with its receiver and ssh).
func childrenCPU() float64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_CHILDREN, &ru)
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

// benchAgentEnv makes this test binary an agent process (see init).
const (
	benchAgentEnv        = "DRSYNCER_BENCH_AGENT"
	benchAgentProfileEnv = "DRSYNCER_BENCH_AGENT_CPUPROFILE"
)

func init() {
	if dir := os.Getenv(benchAgentEnv); dir != "" {
		os.Exit(runBenchAgent(dir))
	}
}

// runBenchAgent serves <dir>/kubelet with the host key <dir>/host_key and
// the user CA <dir>/ca.pub on 127.0.0.1, prints its port on stdout, and
// stops on SIGTERM or when stdin closes.
func runBenchAgent(dir string) int {
	fail := func(err error) int {
		fmt.Fprintln(os.Stderr, "bench agent:", err)
		return 1
	}
	cfg, err := LoadAgentConfig(filepath.Join(dir, "host_key"), "", filepath.Join(dir, "ca.pub"))
	if err != nil {
		return fail(err)
	}
	kubelet, err := os.ReadFile(filepath.Join(dir, "kubelet"))
	if err != nil {
		return fail(err)
	}
	cfg.KubeletDir = string(kubelet)
	cfg.Logger = slog.New(slog.DiscardHandler)
	a, err := NewAgent(cfg)
	if err != nil {
		return fail(err)
	}
	if p := os.Getenv(benchAgentProfileEnv); p != "" {
		f, err := os.Create(fmt.Sprintf("%s.%d", p, os.Getpid()))
		if err != nil {
			return fail(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return fail(err)
		}
		defer f.Close()
		defer pprof.StopCPUProfile()
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fail(err)
	}
	fmt.Println(l.Addr().(*net.TCPAddr).Port)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithCancel(ctx)
	go func() { _, _ = io.Copy(io.Discard, os.Stdin); cancel() }()
	if err := a.Serve(ctx, l); err != nil {
		return fail(err)
	}
	return 0
}

// benchAgent is an agent process and the credentials to pull from it.
type benchAgent struct {
	pid      int
	endpoint Endpoint
	keyDir   string
}

func startBenchAgent(b *testing.B, kubelet, volume string) *benchAgent {
	dir := b.TempDir()
	host, hostPEM := newKeyPEM(b)
	ca, _ := newKeyPEM(b)
	must(b, os.WriteFile(filepath.Join(dir, "host_key"), hostPEM, 0o600))
	must(b, os.WriteFile(filepath.Join(dir, "ca.pub"), ssh.MarshalAuthorizedKey(ca.PublicKey()), 0o600))
	must(b, os.WriteFile(filepath.Join(dir, "kubelet"), []byte(kubelet), 0o600))
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), benchAgentEnv+"="+dir)
	// A session of its own, like sshd's: see BenchmarkPull.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	must(b, err)
	stdout, err := cmd.StdoutPipe()
	must(b, err)
	must(b, cmd.Start())
	b.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		stdin.Close()
		_ = cmd.Wait()
	})
	var port int
	if _, err := fmt.Fscan(stdout, &port); err != nil {
		b.Fatalf("bench agent did not start: %v", err)
	}
	ep := Endpoint{Host: "127.0.0.1", Port: port}
	c, err := IssueCredentials(ca, host.PublicKey(), []string{ep.String()}, volume, 24*time.Hour)
	must(b, err)
	keyDir := b.TempDir()
	must(b, WriteCredentials(keyDir, c))
	return &benchAgent{pid: cmd.Process.Pid, endpoint: ep, keyDir: keyDir}
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

// makeSparseFile writes a 2 GiB file that is 90% holes: 1 MiB of random
// data at the start of every 10 MiB.
func makeSparseFile(b *testing.B, dir string) int64 {
	const size = 2 << 30
	f, err := os.Create(filepath.Join(dir, "sparse.img"))
	must(b, err)
	src := mrand.NewChaCha8([32]byte{2})
	chunk := make([]byte, 1<<20)
	for off := int64(0); off < size; off += 10 << 20 {
		_, _ = src.Read(chunk)
		_, err := f.WriteAt(chunk, off)
		must(b, err)
	}
	must(b, f.Truncate(size))
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
	pid     int
	port    int
	keyDir  string // id_ed25519 and known_hosts for the client
	sshPath string
}

func startSSHD(b testing.TB) *sshd {
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
	return &sshd{pid: cmd.Process.Pid, port: port, keyDir: keyDir, sshPath: sshPath}
}

// pull is a baseline: rsync with flags, through OpenSSH with the same
// cipher as Pull.
func (s *sshd) pull(ctx context.Context, src, dest string, flags ...string) (Stats, error) {
	e := fmt.Sprintf("%s -F /dev/null -i %s -o IdentitiesOnly=yes -o UserKnownHostsFile=%s -o GlobalKnownHostsFile=/dev/null -o StrictHostKeyChecking=yes -o BatchMode=yes -c aes128-gcm@openssh.com -p %d",
		s.sshPath, filepath.Join(s.keyDir, KeyFile), filepath.Join(s.keyDir, KnownHostsFile), s.port)
	args := append(slices.Clone(flags), "-e", e, "root@127.0.0.1:"+withSlash(src), withSlash(dest))
	cmd := exec.CommandContext(ctx, "rsync", args...)
	cmd.Env = pullEnv()
	out, err := cmd.CombinedOutput()
	if err != nil {
		return Stats{}, fmt.Errorf("raw rsync: %w: %s", err, out)
	}
	st, ok := ParseStats(out)
	if !ok {
		return Stats{}, fmt.Errorf("raw rsync: no --stats figures: %s", out)
	}
	return st, nil
}

func newKeyPEM(b testing.TB) (ssh.Signer, []byte) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	must(b, err)
	s, err := ssh.NewSignerFromKey(priv)
	must(b, err)
	block, err := ssh.MarshalPrivateKey(priv, "bench")
	must(b, err)
	return s, pem.EncodeToMemory(block)
}
