package pvcsync

import (
	"bufio"
	"bytes"
	"io"
	"math"
	"strconv"
	"strings"
)

// ParseProgress reads one --info=progress2 line, such as
//
//	"  1,234,567  42%   12.34MB/s    0:00:10 (xfr#3, to-chk=17/42)"
//
// (rsync ends these lines with \r, not \n; "ir-chk" replaces "to-chk" while
// the incremental file list is still growing). It reports false for anything
// else, and never panics. Thousands separators are accepted, so the parse
// does not depend on --no-human-readable; a human-readable size ("1.23G") is
// accepted approximately.
func ParseProgress(line string) (Progress, bool) {
	f := strings.Fields(line)
	if len(f) < 4 {
		return Progress{}, false
	}
	var p Progress
	var ok bool
	if p.Bytes, ok = parseCount(f[0]); !ok {
		return Progress{}, false
	}
	pct, found := strings.CutSuffix(f[1], "%")
	if !found {
		return Progress{}, false
	}
	n, err := strconv.Atoi(pct)
	if err != nil || n < 0 || n > 100 {
		return Progress{}, false
	}
	p.Percent = n
	if p.Rate, ok = parseRate(f[2]); !ok {
		return Progress{}, false
	}
	if !strings.Contains(f[3], ":") {
		return Progress{}, false
	}
	// The (xfr#N, to-chk=A/B) part is missing on the very first line.
	for _, w := range f[4:] {
		w = strings.TrimRight(w, ")")
		_, chk, found := strings.Cut(w, "-chk=")
		if !found {
			continue
		}
		a, b, found := strings.Cut(chk, "/")
		if !found {
			return Progress{}, false
		}
		if p.ToCheck, ok = parseCount(a); !ok {
			return Progress{}, false
		}
		if p.Total, ok = parseCount(b); !ok {
			return Progress{}, false
		}
	}
	return p, true
}

// parseRate reads "554.10MB/s", "0.00kB/s" (rsync's units are powers of
// 1024 in this field).
func parseRate(s string) (float64, bool) {
	s, found := strings.CutSuffix(s, "B/s")
	if !found {
		return 0, false
	}
	mult := 1.0
	if s != "" {
		switch s[len(s)-1] {
		case 'k', 'K':
			mult = 1 << 10
		case 'M':
			mult = 1 << 20
		case 'G':
			mult = 1 << 30
		case 'T':
			mult = 1 << 40
		case 'P':
			mult = 1 << 50
		}
		if mult != 1 {
			s = s[:len(s)-1]
		}
	}
	v, err := strconv.ParseFloat(strings.ReplaceAll(s, ",", ""), 64)
	if err != nil || v < 0 || math.IsInf(v, 0) || math.IsNaN(v) {
		return 0, false
	}
	return v * mult, true
}

// parseCount reads a non-negative count as rsync prints it: plain digits,
// digits with "," or "." thousands separators, or a human-readable figure
// with a K/M/G/T/P suffix (powers of 1000, as rsync -h does).
func parseCount(s string) (int64, bool) {
	if s == "" {
		return 0, false
	}
	mult := 1.0
	switch s[len(s)-1] {
	case 'K', 'k':
		mult = 1e3
	case 'M':
		mult = 1e6
	case 'G':
		mult = 1e9
	case 'T':
		mult = 1e12
	case 'P':
		mult = 1e15
	}
	if mult != 1 {
		v, err := strconv.ParseFloat(s[:len(s)-1], 64)
		if err != nil || v < 0 || v*mult >= math.MaxInt64 || math.IsNaN(v) {
			return 0, false
		}
		return int64(v * mult), true
	}
	digits := strings.NewReplacer(",", "", ".", "").Replace(s)
	if digits == "" {
		return 0, false
	}
	for i := 0; i < len(digits); i++ {
		if digits[i] < '0' || digits[i] > '9' {
			return 0, false
		}
	}
	v, err := strconv.ParseInt(digits, 10, 64)
	if err != nil {
		return 0, false
	}
	return v, true
}

// ParseStats reads rsync's --stats block from its output (other lines, such
// as progress, are skipped) and reports whether the block was found: a run
// that ended early prints none. It never panics.
func ParseStats(out []byte) (Stats, bool) {
	var s Stats
	found := false
	for _, line := range bytes.FieldsFunc(out, func(r rune) bool { return r == '\n' || r == '\r' }) {
		key, value, ok := strings.Cut(string(line), ": ")
		if !ok {
			continue
		}
		var field *int64
		switch strings.TrimSpace(key) {
		case "Number of files":
			field = &s.Files
		case "Number of regular files transferred":
			field = &s.FilesTransferred
		case "Total file size":
			field = &s.TotalSize
		case "Total transferred file size":
			field = &s.TransferredSize
		case "Literal data":
			field = &s.LiteralBytes
		case "Matched data":
			field = &s.MatchedBytes
		case "Total bytes sent":
			field = &s.BytesSent
		case "Total bytes received":
			field = &s.BytesReceived
		default:
			continue
		}
		// "202 (reg: 201, dir: 1)", "50000692 bytes": the figure is the
		// first word.
		word, _, _ := strings.Cut(strings.TrimSpace(value), " ")
		if v, ok := parseCount(word); ok {
			*field = v
			found = true
		}
	}
	return s, found
}

// scanProgress splits rsync's stdout into lines ended by \r or \n.
func scanProgress(r io.Reader, line func(string)) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	sc.Split(func(data []byte, atEOF bool) (int, []byte, error) {
		if i := bytes.IndexAny(data, "\r\n"); i >= 0 {
			return i + 1, data[:i], nil
		}
		if atEOF && len(data) > 0 {
			return len(data), data, nil
		}
		return 0, nil, nil
	})
	for sc.Scan() {
		line(sc.Text())
	}
	return sc.Err()
}
