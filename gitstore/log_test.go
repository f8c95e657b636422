package gitstore

import (
	"testing"
)

func TestLogAndTrailers(t *testing.T) {
	ctx := t.Context()
	r, _ := initRepo(t)
	var hashes []string
	for i, msg := range []string{"one", "two\n\nbody\n\nSource-Cluster: prod\nObjects-Added: 2\n", "three"} {
		h, err := r.Commit(ctx, []Change{{Path: "f", Content: []byte{byte('a' + i)}}}, CommitOptions{Branch: "main", Message: msg})
		if err != nil {
			t.Fatal(err)
		}
		hashes = append(hashes, h.String())
	}
	var seen []CommitInfo
	if err := r.Log(ctx, "main", func(c CommitInfo) bool { seen = append(seen, c); return true }); err != nil {
		t.Fatal(err)
	}
	if len(seen) != 3 || seen[0].Hash.String() != hashes[2] || seen[2].Hash.String() != hashes[0] {
		t.Fatalf("log order: %v", seen)
	}
	if seen[1].Subject != "two" || seen[1].Trailer("Source-Cluster") != "prod" || seen[1].Trailer("Objects-Added") != "2" || seen[0].Trailer("Source-Cluster") != "" {
		t.Errorf("subject/trailers: %+v", seen[1])
	}
	n := 0
	if err := r.Log(ctx, "main", func(CommitInfo) bool { n++; return n < 2 }); err != nil || n != 2 {
		t.Errorf("stop early: n=%d err=%v", n, err)
	}
}
