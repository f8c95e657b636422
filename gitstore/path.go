package gitstore

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/go-git/go-git/v5/plumbing"
)

// validatePath checks a repository path as Commit, ReadFile and Diff accept it:
// slash-separated, relative, with no empty, ".", ".." or ".git" segment and no
// NUL. Segments that checkouts on NTFS or HFS+ would treat as ".git" are
// refused too, because `git fsck` flags them and a checkout there would write
// into the repository's own metadata.
func validatePath(p string) error {
	switch {
	case p == "":
		return errors.New("empty path")
	case strings.IndexByte(p, 0) >= 0:
		return errors.New("contains NUL")
	case p[0] == '/':
		return errors.New("absolute path")
	}
	for seg := range strings.SplitSeq(p, "/") {
		switch {
		case seg == "":
			return errors.New("empty segment")
		case seg == "." || seg == "..":
			return fmt.Errorf("segment %q", seg)
		case isDotGit(seg):
			return fmt.Errorf("segment %q names the git directory", seg)
		}
	}
	return nil
}

// isDotGit reports whether a path segment would be ".git" on some file system
// git supports: case-insensitively, with trailing dots and spaces dropped
// (NTFS), as the 8.3 short name "git~1" (NTFS), or with Unicode code points
// that HFS+ ignores.
func isDotGit(seg string) bool {
	t := strings.TrimRight(seg, ". ")
	return foldMatch(t, ".git") || foldMatch(t, "git~1")
}

// foldMatch reports whether s is target (lowercase ASCII) ignoring ASCII
// case and HFS+ ignorable code points, without allocating: it runs for every
// segment of every path.
func foldMatch(s, target string) bool {
	i := 0
	for _, r := range s {
		if hfsIgnorable(r) {
			continue
		}
		if i == len(target) || r >= utf8.RuneSelf || lowerASCII(byte(r)) != target[i] {
			return false
		}
		i++
	}
	return i == len(target)
}

func lowerASCII(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// hfsIgnorable lists the code points HFS+ drops when comparing names (the
// same list as git's is_hfs_dotgit).
func hfsIgnorable(r rune) bool {
	switch {
	case r >= 0x200c && r <= 0x200f, r >= 0x202a && r <= 0x202e, r >= 0x206a && r <= 0x206f, r == 0xfeff:
		return true
	}
	return false
}

// cleanPrefix turns a directory prefix ("", "snapshots/prod" or
// "snapshots/prod/") into its canonical form: "" for the repository root,
// otherwise the directory path with exactly one trailing slash.
func cleanPrefix(prefix string) (string, error) {
	p := strings.TrimSuffix(prefix, "/")
	if p == "" {
		if prefix != "" {
			return "", fmt.Errorf("prefix %q: absolute path", prefix)
		}
		return "", nil
	}
	if err := validatePath(p); err != nil {
		return "", fmt.Errorf("prefix %q: %w", prefix, err)
	}
	return p + "/", nil
}

// branchRef turns a short branch name into its reference name, refusing
// names git would not accept and full reference names given by mistake.
func branchRef(branch string) (plumbing.ReferenceName, error) {
	if branch == "" {
		return "", errors.New("empty branch name")
	}
	if strings.HasPrefix(branch, "refs/") || branch == "HEAD" || strings.HasPrefix(branch, "-") {
		return "", fmt.Errorf("branch %q: want a short branch name such as \"main\"", branch)
	}
	name := plumbing.NewBranchReferenceName(branch)
	if err := name.Validate(); err != nil {
		return "", fmt.Errorf("branch %q: %w", branch, err)
	}
	return name, nil
}
