package gitstore

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// BenchmarkCommitOneChange measures one Commit of one changed file in a
// repository laid out like a real snapshot, against `git add -A && git
// commit` on the same shape. The 100,000-file size runs only with
// DR_SYNCER_BENCH_LARGE=1 and without -short.
//
// The repositories are built once per size with `git fast-import` (one
// commit holding every file, then clones) and cached under
// os.TempDir()/dr-syncer-gitstore-bench-<version>-<size>, so later runs
// reuse them (each run adds its commits on top). Delete the directory to
// start over. gc.auto is 0 in the cached repositories, so that an automatic
// `git gc` inside a git-cli iteration does not distort the baseline.
func BenchmarkCommitOneChange(b *testing.B) {
	for _, n := range benchSizes() {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			fx := benchRepos(b, n)
			b.Run("gitstore-bare", func(b *testing.B) {
				benchGitstore(b, fx, filepath.Join(fx.dir, "bare.git"))
			})
			b.Run("gitstore-worktree", func(b *testing.B) {
				wt := filepath.Join(fx.dir, "wt-gitstore")
				benchGitstore(b, fx, wt)
				b.StopTimer()
				if st := status(b, wt); len(st) != 0 {
					b.Fatalf("git status after the benchmark: %q", st[:min(len(st), 5)])
				}
			})
			b.Run("git-cli", func(b *testing.B) {
				benchGitCLI(b, fx, filepath.Join(fx.dir, "wt-cli"))
			})
		})
	}
}

// BenchmarkCommitFirst measures the first commit of a snapshot of 10,000
// files (as BenchmarkCommitOneChange lays them out) into a new repository:
// with a work tree, bare, and `git add -A && git commit` of the same files
// written into a work tree (the writing counted, as Commit writes them too).
func BenchmarkCommitFirst(b *testing.B) {
	const n = 10_000
	changes := make([]Change, n)
	for i := range n {
		changes[i] = Change{Path: benchPath(i), Content: benchContent(i)}
	}
	ctx := context.Background()
	b.Run("gitstore-worktree", func(b *testing.B) {
		for b.Loop() {
			b.StopTimer()
			r, err := Init(ctx, b.TempDir())
			if err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			if _, err := r.Commit(ctx, changes, CommitOptions{Branch: "main", Message: "x"}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("gitstore-bare", func(b *testing.B) {
		for b.Loop() {
			b.StopTimer()
			dir := b.TempDir()
			if _, err := gitOutput(ctx, dir, "init", "-q", "--bare", "--initial-branch=main"); err != nil {
				b.Fatal(err)
			}
			r, err := Open(ctx, dir)
			if err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			if _, err := r.Commit(ctx, changes, CommitOptions{Branch: "main", Message: "x"}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("git-cli", func(b *testing.B) {
		for b.Loop() {
			b.StopTimer()
			dir := b.TempDir()
			if _, err := gitOutput(ctx, dir, "init", "-q", "--initial-branch=main"); err != nil {
				b.Fatal(err)
			}
			// No automatic gc in the background after 10,000 loose objects.
			for _, kv := range [][2]string{{"gc.auto", "0"}, {"maintenance.auto", "false"}} {
				if _, err := gitOutput(ctx, dir, "config", kv[0], kv[1]); err != nil {
					b.Fatal(err)
				}
			}
			b.StartTimer()
			for _, c := range changes {
				name := filepath.Join(dir, filepath.FromSlash(c.Path))
				if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
					b.Fatal(err)
				}
				if err := os.WriteFile(name, c.Content, 0o644); err != nil {
					b.Fatal(err)
				}
			}
			cmd := exec.CommandContext(ctx, "sh", "-c", "git add -A && git commit -q -m x")
			cmd.Dir, cmd.Env = dir, gitEnv()
			if out, err := cmd.CombinedOutput(); err != nil {
				b.Fatalf("git add/commit: %v\n%s", err, out)
			}
		}
	})
}

// BenchmarkDiff measures Diff of a whole snapshot against the tip, every file
// unchanged: the cost of finding out what changed before committing it.
func BenchmarkDiff(b *testing.B) {
	for _, n := range benchSizes() {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			fx := benchRepos(b, n)
			r, err := Open(context.Background(), filepath.Join(fx.dir, "src.git"))
			if err != nil {
				b.Fatal(err)
			}
			files := make(map[string][]byte, n)
			for i, p := range fx.paths {
				files[p] = benchContent(i)
			}
			b.ResetTimer()
			for range b.N {
				cs, err := r.Diff(context.Background(), "main", SnapshotPrefix("prod"), files)
				if err != nil || len(cs.Changes) != 0 {
					b.Fatalf("Diff = %d changes, %v; want none", len(cs.Changes), err)
				}
			}
		})
	}
}

func benchSizes() []int {
	if !testing.Short() && os.Getenv("DR_SYNCER_BENCH_LARGE") == "1" {
		return []int{10_000, 100_000}
	}
	return []int{10_000}
}

type benchFixture struct {
	dir   string
	paths []string // every file of the snapshot
}

// next returns a file to change and new content for it that no run has
// committed before.
func (fx *benchFixture) next(i int) (string, []byte) {
	k := (i*7919 + int(time.Now().UnixNano()%1_000_003)) % len(fx.paths)
	return fx.paths[k], append(benchContent(k), fmt.Sprintf("# revision %d-%d\n", time.Now().UnixNano(), i)...)
}

func benchGitstore(b *testing.B, fx *benchFixture, dir string) {
	ctx := context.Background()
	r, err := Open(ctx, dir)
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := range b.N {
		p, content := fx.next(i)
		if _, err := r.Commit(ctx, []Change{{Path: p, Content: content}}, CommitOptions{Branch: "main", Message: "x"}); err != nil {
			b.Fatal(err)
		}
	}
}

func benchGitCLI(b *testing.B, fx *benchFixture, dir string) {
	ctx := context.Background()
	b.ResetTimer()
	for i := range b.N {
		p, content := fx.next(i)
		if err := os.WriteFile(filepath.Join(dir, filepath.FromSlash(p)), content, 0o644); err != nil {
			b.Fatal(err)
		}
		cmd := exec.CommandContext(ctx, "sh", "-c", "git add -A && git commit -q -m x")
		cmd.Dir, cmd.Env = dir, gitEnv()
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("git add/commit: %v\n%s", err, out)
		}
	}
}

const benchVersion = "v1" // change when the generated content changes

// benchRepos returns the cached repositories of n files, building them if
// needed: src.git (made by fast-import; never committed to, so that Diff
// finds it equal to the generated files), bare.git (a bare clone),
// wt-gitstore and wt-cli (clones with a work tree).
func benchRepos(b *testing.B, n int) *benchFixture {
	fx := &benchFixture{dir: filepath.Join(os.TempDir(), fmt.Sprintf("dr-syncer-gitstore-bench-%s-%d", benchVersion, n))}
	for i := range n {
		fx.paths = append(fx.paths, benchPath(i))
	}
	if _, err := os.Stat(filepath.Join(fx.dir, "ready")); err == nil {
		return fx
	}
	start := time.Now()
	tmp, err := os.MkdirTemp(os.TempDir(), "dr-syncer-gitstore-bench-build-")
	if err != nil {
		b.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	if err := buildBenchRepos(tmp, n); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tmp, "ready"), nil, 0o644); err != nil {
		b.Fatal(err)
	}
	if err := os.Rename(tmp, fx.dir); err != nil && !errors.Is(err, fs.ErrExist) && !isNotEmpty(err) {
		b.Fatal(err)
	}
	b.Logf("built the %d-file repositories in %s, cached in %s", n, time.Since(start).Round(time.Millisecond), fx.dir)
	return fx
}

// isNotEmpty reports a rename that failed because another run built the
// cache first.
func isNotEmpty(err error) bool {
	return strings.Contains(err.Error(), "directory not empty")
}

func buildBenchRepos(dir string, n int) error {
	ctx := context.Background()
	src := filepath.Join(dir, "src.git")
	if _, err := gitOutput(ctx, dir, "init", "-q", "--bare", "--initial-branch=main", src); err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, "git", "-C", src, "fast-import", "--quiet")
	cmd.Env = gitEnv()
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	werr := writeFastImport(stdin, n)
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("git fast-import: %w", err)
	}
	if werr != nil {
		return werr
	}
	for _, args := range [][]string{
		{"clone", "-q", "--bare", src, "bare.git"},
		{"clone", "-q", src, "wt-gitstore"},
		{"clone", "-q", src, "wt-cli"},
	} {
		if _, err := gitOutput(ctx, dir, args...); err != nil {
			return err
		}
	}
	for _, repo := range []string{"bare.git", "wt-gitstore", "wt-cli"} {
		for _, kv := range [][2]string{{"gc.auto", "0"}, {"maintenance.auto", "false"}, {"user.name", "Person"}, {"user.email", "person@example.com"}} {
			if _, err := gitOutput(ctx, filepath.Join(dir, repo), "config", kv[0], kv[1]); err != nil {
				return err
			}
		}
	}
	// Refresh the index once, as a work tree in use would have it.
	for _, wt := range []string{"wt-gitstore", "wt-cli"} {
		if _, err := gitOutput(ctx, filepath.Join(dir, wt), "status", "--porcelain"); err != nil {
			return err
		}
	}
	return nil
}

func writeFastImport(w io.Writer, n int) error {
	bw := bufio.NewWriterSize(w, 1<<20)
	fmt.Fprintf(bw, "commit refs/heads/main\ncommitter Person <person@example.com> 1767225600 +0000\ndata 8\nsnapshot\n")
	for i := range n {
		c := benchContent(i)
		fmt.Fprintf(bw, "M 100644 inline %s\ndata %d\n", benchPath(i), len(c))
		bw.Write(c)
		bw.WriteByte('\n')
	}
	fmt.Fprintf(bw, "M 100644 inline overlays/dr/kustomization.yaml\ndata 34\nresources:\n- ../../snapshots/prod\n\n")
	return bw.Flush()
}

// benchKind spreads files over kinds as in a real cluster: ConfigMaps 70%,
// Deployments 15%, Services 10%, Secrets 5%.
func benchKind(i int) (group, kind, short string) {
	switch r := (i * 37) % 100; {
	case r < 70:
		return "", "ConfigMap", "cm"
	case r < 85:
		return "apps", "Deployment", "deploy"
	case r < 95:
		return "", "Service", "svc"
	default:
		return "", "Secret", "secret"
	}
}

func benchPath(i int) string {
	group, kind, short := benchKind(i)
	p, err := ObjectPath("prod", ObjectID{Group: group, Kind: kind, Namespace: fmt.Sprintf("ns-%03d", i%100), Name: fmt.Sprintf("%s-%06d", short, i)})
	if err != nil {
		panic(err)
	}
	return p
}

// benchContent is about 600 bytes of YAML shaped like the object it stands for.
func benchContent(i int) []byte {
	group, kind, short := benchKind(i)
	apiVersion := "v1"
	if group != "" {
		apiVersion = group + "/v1"
	}
	var s strings.Builder
	fmt.Fprintf(&s, "apiVersion: %s\nkind: %s\nmetadata:\n  name: %s-%06d\n  namespace: ns-%03d\n", apiVersion, kind, short, i, i%100)
	fmt.Fprintf(&s, "  labels:\n    app.kubernetes.io/name: app-%04d\n    app.kubernetes.io/part-of: shop\n", i%997)
	fmt.Fprintf(&s, "  annotations:\n    dr-syncer.io/source: prod\n")
	switch kind {
	case "Deployment":
		fmt.Fprintf(&s, "spec:\n  replicas: %d\n  selector:\n    matchLabels:\n      app: app-%04d\n  template:\n    spec:\n      containers:\n      - name: app\n        image: registry.example.com/shop/app:%d.%d\n", 1+i%5, i%997, i%7, i%13)
	case "Service":
		fmt.Fprintf(&s, "spec:\n  type: ClusterIP\n  selector:\n    app: app-%04d\n  ports:\n  - name: http\n    port: 80\n    targetPort: %d\n", i%997, 8000+i%100)
	case "Secret":
		fmt.Fprintf(&s, "type: Opaque\ndata:\n  password: ENC[age,%032x]\n", i*2654435761)
	default:
		s.WriteString("data:\n")
	}
	for k := 0; s.Len() < 600; k++ {
		fmt.Fprintf(&s, "  key-%02d: value-%d-%d\n", k, i, k*31)
	}
	return []byte(s.String())
}
