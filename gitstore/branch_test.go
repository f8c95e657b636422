package gitstore

import "testing"

func TestIsURL(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want bool
	}{
		{"https://git.example.com/ops/dr.git", true},
		{"ssh://git@host:2222/dr.git", true},
		{"git@github.com:ops/dr.git", true},
		{"host:dr.git", true},
		{"file:///srv/dr.git", true},
		{"./dr", false},
		{"dr", false},
		{"/srv/dr", false},
		{"./a:b", false},
		{"C:\\dr", false},
	} {
		if got := IsURL(tc.in); got != tc.want {
			t.Errorf("IsURL(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestCacheDirHasNoCredentials(t *testing.T) {
	a := CacheDir("/c", Remote{URL: "https://user@host/dr.git"})
	b := CacheDir("/c", Remote{URL: "https://host/dr.git"})
	if a != b {
		t.Errorf("the user part of the URL changes the cache directory: %s, %s", a, b)
	}
}
