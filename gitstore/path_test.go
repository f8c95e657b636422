package gitstore

import "testing"

func TestValidatePath(t *testing.T) {
	for _, tc := range []struct {
		path string
		ok   bool
	}{
		{"a", true},
		{"snapshots/prod/default/ConfigMap/cm.yaml", true},
		{"a/.hidden/b", true},
		{"a/...", true},
		{"a/.gitignore", true},
		{"a/.github/workflow.yaml", true},
		{"a/git", true},
		{"a b/c", true},
		{"ünï/cödé", true},
		{"", false},
		{"/a", false},
		{"a/", false},
		{"a//b", false},
		{".", false},
		{"..", false},
		{"../x", false},
		{"a/../b", false},
		{"a/./b", false},
		{"a/..", false},
		{".git", false},
		{".git/config", false},
		{"a/.git/hooks/pre-commit", false},
		{"a/.GIT/config", false},
		{"a/.git./x", false},
		{"a/.git . /x", false},
		{"a/GIT~1/x", false},
		{"a/.g\u200cit/x", false},
		{"a/\ufeff.git/x", false},
		{"a\x00b", false},
	} {
		err := validatePath(tc.path)
		if (err == nil) != tc.ok {
			t.Errorf("validatePath(%q) = %v, want ok=%v", tc.path, err, tc.ok)
		}
	}
}

func TestCleanPrefix(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"", "", true},
		{"snapshots/prod/", "snapshots/prod/", true},
		{"snapshots/prod", "snapshots/prod/", true},
		{"/", "", false},
		{"/snapshots/", "", false},
		{"snapshots//prod/", "", false},
		{"../snapshots/", "", false},
	} {
		got, err := cleanPrefix(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("cleanPrefix(%q) = %q, %v; want %q, ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestBranchRef(t *testing.T) {
	for _, tc := range []struct {
		branch string
		ok     bool
	}{
		{"main", true},
		{"snapshots/prod", true},
		{"", false},
		{"refs/heads/main", false},
		{"HEAD", false},
		{"-main", false},
		{"a..b", false},
		{"a b", false},
		{"a.lock", false},
		{"a/", false},
		{".a", false},
		{"a~1", false},
		{"a:b", false},
	} {
		_, err := branchRef(tc.branch)
		if (err == nil) != tc.ok {
			t.Errorf("branchRef(%q) = %v, want ok=%v", tc.branch, err, tc.ok)
		}
	}
}
