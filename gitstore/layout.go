package gitstore

import (
	"errors"
	"fmt"
	"strings"
)

// ObjectID names one Kubernetes object in the repository layout.
type ObjectID struct {
	Group     string // API group; "" is the core group
	Kind      string // e.g. "ConfigMap"
	Namespace string // "" for cluster-scoped objects
	Name      string
}

// describe gives id as "group.Kind/namespace/name" (without the group for
// the core group and without the namespace for cluster-scoped objects), for
// messages.
func describe(id ObjectID) string {
	s := id.Kind
	if id.Group != "" {
		s = id.Group + "." + id.Kind
	}
	if id.Namespace != "" {
		s += "/" + id.Namespace
	}
	return s + "/" + id.Name
}

// SnapshotsDir is the directory of every source's snapshot (SnapshotPrefix).
const SnapshotsDir = "snapshots"

const (
	snapshotsDir = SnapshotsDir + "/"
	clusterScope = "_cluster" // not a DNS label, so it cannot collide with a namespace
	objectExt    = ".yaml"
)

// SnapshotPrefix returns "snapshots/<source>/", the directory that holds the
// snapshot of one source cluster. It does not validate source; ObjectPath
// does.
func SnapshotPrefix(source string) string {
	return snapshotsDir + source + "/"
}

// ObjectPath returns where the object id of cluster source lives:
// snapshots/<source>/<namespace>/<group>.<kind>/<name>.yaml, with "_cluster"
// as the namespace of cluster-scoped objects and the bare kind for the core
// group ("ConfigMap", "apps.Deployment").
//
// The name is encoded so that no name can leave its directory or collide with
// another on a case-insensitive file system: every byte outside [a-z0-9-._:]
// is written as %XX (uppercase hex), and so is a leading "." (so ".", ".." and
// hidden names cannot occur). Source and namespace must be DNS labels, the
// group a DNS subdomain and the kind an identifier as Kubernetes accepts them;
// anything else, and an empty name, is an error.
func ObjectPath(source string, id ObjectID) (string, error) {
	if err := checkID(source, id); err != nil {
		return "", fmt.Errorf("gitstore: object path for %s: %w", describe(id), err)
	}
	ns := id.Namespace
	if ns == "" {
		ns = clusterScope
	}
	return SnapshotPrefix(source) + ns + "/" + kindDir(id.Group, id.Kind) + "/" + encodeName(id.Name) + objectExt, nil
}

// ParseObjectPath is the inverse of ObjectPath. Any path that ObjectPath
// cannot have produced, including a non-canonical name encoding, is an error.
func ParseObjectPath(path string) (source string, id ObjectID, err error) {
	source, id, err = parseObjectPath(path)
	if err != nil {
		return "", ObjectID{}, fmt.Errorf("gitstore: object path %q: %w", path, err)
	}
	return source, id, nil
}

func parseObjectPath(path string) (string, ObjectID, error) {
	rest, ok := strings.CutPrefix(path, snapshotsDir)
	if !ok {
		return "", ObjectID{}, fmt.Errorf("not under %q", snapshotsDir)
	}
	segs := strings.Split(rest, "/")
	if len(segs) != 4 {
		return "", ObjectID{}, errors.New("want snapshots/<source>/<namespace>/<group>.<kind>/<name>.yaml")
	}
	source, ns, gk, file := segs[0], segs[1], segs[2], segs[3]
	var id ObjectID
	if ns != clusterScope {
		if ns == "" {
			return "", ObjectID{}, errors.New("empty namespace")
		}
		id.Namespace = ns
	}
	if i := strings.LastIndexByte(gk, '.'); i >= 0 {
		id.Group, id.Kind = gk[:i], gk[i+1:]
		if id.Group == "" {
			return "", ObjectID{}, fmt.Errorf("directory %q: empty group", gk)
		}
	} else {
		id.Kind = gk
	}
	enc, ok := strings.CutSuffix(file, objectExt)
	if !ok {
		return "", ObjectID{}, fmt.Errorf("file %q: want a %s file", file, objectExt)
	}
	name, err := decodeName(enc)
	if err != nil {
		return "", ObjectID{}, fmt.Errorf("file %q: %w", file, err)
	}
	id.Name = name
	if err := checkID(source, id); err != nil {
		return "", ObjectID{}, err
	}
	return source, id, nil
}

func kindDir(group, kind string) string {
	if group == "" {
		return kind
	}
	return group + "." + kind
}

func checkID(source string, id ObjectID) error {
	switch {
	case !isDNSLabel(source):
		return fmt.Errorf("source %q: not a DNS label", source)
	case id.Namespace != "" && !isDNSLabel(id.Namespace):
		return fmt.Errorf("namespace %q: not a DNS label", id.Namespace)
	case id.Group != "" && !isDNSSubdomain(id.Group):
		return fmt.Errorf("group %q: not a DNS subdomain", id.Group)
	case !isKind(id.Kind):
		return fmt.Errorf("kind %q: not a Kubernetes kind", id.Kind)
	case id.Name == "":
		return errors.New("empty name")
	}
	return nil
}

// isDNSLabel reports whether s is an RFC 1123 label, as Kubernetes requires
// of namespaces: [a-z0-9]([-a-z0-9]*[a-z0-9])?, at most 63 bytes.
func isDNSLabel(s string) bool {
	if s == "" || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !isLowerAlnum(c) && c != '-' {
			return false
		}
	}
	return true
}

// isDNSSubdomain reports whether s is an RFC 1123 subdomain (API groups are).
func isDNSSubdomain(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if !isDNSLabel(label) {
			return false
		}
	}
	return true
}

// isKind reports whether s is a kind as the API server accepts it for custom
// resources: a DNS-1035 label when lowercased, so letters, digits and inner
// hyphens, starting with a letter, no dot.
func isKind(s string) bool {
	if s == "" || len(s) > 63 || !isLetter(s[0]) || s[len(s)-1] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !isLetter(c) && !isDigit(c) && c != '-' {
			return false
		}
	}
	return true
}

func isLetter(c byte) bool     { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }
func isDigit(c byte) bool      { return '0' <= c && c <= '9' }
func isLowerAlnum(c byte) bool { return 'a' <= c && c <= 'z' || isDigit(c) }

// nameSafe reports whether byte c may appear unencoded in a file name.
func nameSafe(c byte) bool {
	return isLowerAlnum(c) || c == '-' || c == '.' || c == '_' || c == ':'
}

const upperHex = "0123456789ABCDEF"

func encodeName(name string) string {
	var b strings.Builder
	b.Grow(len(name))
	for i := 0; i < len(name); i++ {
		c := name[i]
		if nameSafe(c) && !(i == 0 && c == '.') {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(upperHex[c>>4])
		b.WriteByte(upperHex[c&0xf])
	}
	return b.String()
}

// decodeName inverts encodeName and accepts only its canonical output, so
// that every object has exactly one path.
func decodeName(enc string) (string, error) {
	var b strings.Builder
	b.Grow(len(enc))
	for i := 0; i < len(enc); i++ {
		c := enc[i]
		if c != '%' {
			b.WriteByte(c)
			continue
		}
		if i+2 >= len(enc) {
			return "", errors.New("truncated %-escape")
		}
		hi, lo := strings.IndexByte(upperHex, enc[i+1]), strings.IndexByte(upperHex, enc[i+2])
		if hi < 0 || lo < 0 {
			return "", fmt.Errorf("bad %%-escape %q", enc[i:i+3])
		}
		b.WriteByte(byte(hi<<4 | lo))
		i += 2
	}
	name := b.String()
	if encodeName(name) != enc {
		return "", errors.New("name is not canonically encoded")
	}
	return name, nil
}
