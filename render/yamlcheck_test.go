package render

import (
	"fmt"
	"strings"
	"testing"
)

func TestCheckYAML(t *testing.T) {
	var bomb strings.Builder
	bomb.WriteString("a0: &a0 [lol]\n")
	for i := 1; i <= 9; i++ {
		fmt.Fprintf(&bomb, "a%d: &a%d [%s]\n", i, i, strings.TrimSuffix(strings.Repeat(fmt.Sprintf("*a%d, ", i-1), 9), ", "))
	}
	wide := "x: &x {a: b, c: d}\nl: [" + strings.Repeat("*x, ", 20_000) + "*x]\n"
	for _, tc := range []struct {
		file, data string
		ok         bool
	}{
		{"overlays/dr/cm.yaml", "apiVersion: v1\nkind: ConfigMap\ndata: &d {a: b}\nbinaryData: *d\n", true},
		{"overlays/dr/kustomization.yaml", "resources: [a]\n", true},
		{"overlays/dr/cm.yaml", bomb.String(), false},
		{"overlays/dr/Kustomization", bomb.String(), false},
		{"overlays/dr/cm.yml", "---\n" + bomb.String(), false},
		{"overlays/dr/cm.yaml", "a: 1\n---\n" + bomb.String(), false},
		{"overlays/dr/cm.yaml", wide, true},                 // many aliases, each small: linear
		{"overlays/dr/app.properties", bomb.String(), true}, // a generator's source, not YAML
		{"overlays/dr/cm.yaml", "a: *nope\n", true},         // kustomize reports it
		{"overlays/dr/cm.yaml", "a: b\nc: \"M\xfcnchen\"\n", false},
		{"overlays/dr/cm.yaml", "\xff\xfea\x00:\x00 \x00b\x00\n\x00", true}, // UTF-16 with its BOM
		{"overlays/dr/app.properties", "city=M\xfcnchen\n", true},
	} {
		err := checkYAML(tc.file, []byte(tc.data))
		if (err == nil) != tc.ok {
			t.Errorf("checkYAML(%s, %.40q…) = %v, want ok=%v", tc.file, tc.data, err, tc.ok)
		}
		if err != nil && !strings.HasPrefix(err.Error(), tc.file+":") {
			t.Errorf("error does not start with the file: %v", err)
		}
	}
}

func TestInvalidUTF8At(t *testing.T) {
	line, col := invalidUTF8At([]byte("a: b\nc: \"M\xfcnchen\"\n"))
	if line != 2 || col != 6 {
		t.Errorf("invalidUTF8At = %d:%d, want 2:6", line, col)
	}
}
