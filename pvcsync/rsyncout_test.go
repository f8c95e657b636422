package pvcsync

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseProgress(t *testing.T) {
	tests := []struct {
		line string
		want Progress
		ok   bool
	}{
		{"          32768   0%    0.00kB/s    0:00:00  ", Progress{Bytes: 32768}, true},
		{"       50000692 100%  541.51MB/s    0:00:00 (xfr#201, to-chk=0/202)", Progress{Bytes: 50000692, Percent: 100, Rate: 541.51 * (1 << 20), ToCheck: 0, Total: 202}, true},
		{"     50,000,000  99%  627.01MB/s    0:00:00 (xfr#1, to-chk=200/202)", Progress{Bytes: 50000000, Percent: 99, Rate: 627.01 * (1 << 20), ToCheck: 200, Total: 202}, true},
		{"  1,048,576  10%    1.00GB/s    0:00:01 (xfr#3, ir-chk=1000/1200)", Progress{Bytes: 1048576, Percent: 10, Rate: 1 << 30, ToCheck: 1000, Total: 1200}, true},
		{"", Progress{}, false},
		{"Number of files: 202 (reg: 201, dir: 1)", Progress{}, false},
		{"sent 3090 bytes  received 19 bytes  6218.00 bytes/sec", Progress{}, false},
		{"  12 101% 1kB/s 0:00:00", Progress{}, false},
		{"  12 10% 1kB/s 0:00:00 (xfr#1, to-chk=x/2)", Progress{}, false},
	}
	for _, tt := range tests {
		got, ok := ParseProgress(tt.line)
		if ok != tt.ok {
			t.Errorf("ParseProgress(%q) ok = %v, want %v", tt.line, ok, tt.ok)
			continue
		}
		if d := cmp.Diff(tt.want, got); d != "" {
			t.Errorf("ParseProgress(%q) (-want +got):\n%s", tt.line, d)
		}
	}
}

// TestParseStatsGolden parses --stats blocks captured from rsync 3.5 runs.
func TestParseStatsGolden(t *testing.T) {
	tests := []struct {
		file string
		want Stats
	}{
		{"full.txt", Stats{Files: 202, FilesTransferred: 201, TotalSize: 50000692, TransferredSize: 50000692, LiteralBytes: 50000692, BytesSent: 50024636, BytesReceived: 3853}},
		{"human.txt", Stats{Files: 202, FilesTransferred: 201, TotalSize: 50000692, TransferredSize: 50000692, LiteralBytes: 50000692, BytesSent: 50024234, BytesReceived: 3838}},
	}
	for _, tt := range tests {
		out, err := os.ReadFile(filepath.Join("testdata", "rsyncout", tt.file))
		if err != nil {
			t.Fatal(err)
		}
		got, ok := ParseStats(out)
		if !ok {
			t.Fatalf("%s: no stats found", tt.file)
		}
		if d := cmp.Diff(tt.want, got); d != "" {
			t.Errorf("%s (-want +got):\n%s", tt.file, d)
		}
	}
	if _, ok := ParseStats([]byte("rsync: connection unexpectedly closed\n")); ok {
		t.Errorf("stats found in an error message")
	}
}

func FuzzParseProgress(f *testing.F) {
	f.Add("       50000692 100%  541.51MB/s    0:00:00 (xfr#201, to-chk=0/202)")
	f.Fuzz(func(t *testing.T, line string) {
		p, ok := ParseProgress(line)
		if ok && (p.Bytes < 0 || p.Percent < 0 || p.Percent > 100 || p.Rate < 0) {
			t.Errorf("ParseProgress(%q) = %+v", line, p)
		}
	})
}

func FuzzParseStats(f *testing.F) {
	f.Add([]byte("Number of files: 202 (reg: 201, dir: 1)\nTotal bytes received: 3,853\n"))
	f.Fuzz(func(t *testing.T, out []byte) {
		s, _ := ParseStats(out)
		if s.Files < 0 || s.BytesReceived < 0 || s.TotalSize < 0 {
			t.Errorf("ParseStats(%q) = %+v", out, s)
		}
	})
}
