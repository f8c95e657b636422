package gitstore

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// TestEncodeTreeAsGoGit: treeBuilder.encodeTree writes the bytes (and so
// the hash) that go-git's object.Tree.Encode writes, for every mode git
// records, and refuses what Encode refuses.
func TestEncodeTreeAsGoGit(t *testing.T) {
	h := func(s string) plumbing.Hash { return plumbing.ComputeHash(plumbing.BlobObject, []byte(s)) }
	for _, tc := range []struct {
		name    string
		entries []object.TreeEntry
		wantErr bool
	}{
		{name: "empty"},
		{name: "modes", entries: []object.TreeEntry{
			{Name: "a.yaml", Mode: filemode.Regular, Hash: h("a")},
			{Name: "b.sh", Mode: filemode.Executable, Hash: h("c")},
			{Name: "b", Mode: filemode.Dir, Hash: h("b")},
			{Name: "größe ✓.yaml", Mode: filemode.Regular, Hash: h("f")},
			{Name: "link", Mode: filemode.Symlink, Hash: h("d")},
			{Name: "mod", Mode: filemode.Submodule, Hash: h("e")},
		}},
		// git sorts a directory as its name and "/": after "b.sh".
		{name: "directory before a file with its prefix", entries: []object.TreeEntry{
			{Name: "b", Mode: filemode.Dir, Hash: h("b")},
			{Name: "b.sh", Mode: filemode.Regular, Hash: h("c")},
		}, wantErr: true},
		{name: "unsorted", entries: []object.TreeEntry{
			{Name: "z", Mode: filemode.Regular, Hash: h("z")},
			{Name: "a", Mode: filemode.Regular, Hash: h("a")},
		}, wantErr: true},
		{name: "NUL in a name", entries: []object.TreeEntry{{Name: "a\x00b", Mode: filemode.Regular, Hash: h("a")}}, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			obj := &plumbing.MemoryObject{}
			encErr := (&object.Tree{Entries: tc.entries}).Encode(obj)
			tb := &treeBuilder{}
			got, err := tb.encodeTree(tc.entries)
			if tc.wantErr {
				if err == nil || encErr == nil {
					t.Fatalf("encodeTree: %v, go-git: %v; want both to fail", err, encErr)
				}
				if errors.Is(encErr, object.ErrEntriesNotSorted) != errors.Is(err, object.ErrEntriesNotSorted) {
					t.Errorf("encodeTree: %v, go-git: %v", err, encErr)
				}
				return
			}
			if err != nil || encErr != nil {
				t.Fatalf("encodeTree: %v, go-git: %v", err, encErr)
			}
			rd, err := obj.Reader()
			if err != nil {
				t.Fatal(err)
			}
			want, err := io.ReadAll(rd)
			if err != nil {
				t.Fatal(err)
			}
			if got != obj.Hash() {
				t.Errorf("hash %s, go-git %s", got, obj.Hash())
			}
			if len(tb.objects) != 1 {
				t.Fatalf("%d objects written, want the tree alone", len(tb.objects))
			}
			if !bytes.Equal(tb.objects[0].data, want) || tb.objects[0].typ != plumbing.TreeObject {
				t.Errorf("encoded %q, go-git %q", tb.objects[0].data, want)
			}
		})
	}
}
