package policies

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.yaml.in/yaml/v3"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

var update = flag.Bool("update", false, "rewrite golden files under testdata/")

// golden compares got with the file at path, or rewrites it under -update.
func golden(t *testing.T, path, got string) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./policies/ -update to write it)", err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("%s differs (-want +got):\n%s", path, diff)
	}
}

func TestDecodeValid(t *testing.T) {
	files, err := filepath.Glob("testdata/valid/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no valid examples: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			if _, err := Load(f); err != nil {
				t.Errorf("want no error, got:\n%v", err)
			}
		})
	}
}

func TestDecodeFull(t *testing.T) {
	c, err := Load("testdata/valid/full.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := &SyncConfig{
		APIVersion: APIVersion,
		Kind:       Kind,
		Metadata:   Metadata{Name: "prod-eu-to-dr-eu"},
		Spec: Spec{
			Source: ClusterRef{Name: "prod-eu"},
			Target: ClusterRef{Name: "dr-eu"},
			Namespaces: []NamespaceMapping{
				{Source: "shop", Target: "shop-dr"},
				{Source: "billing", Target: "billing"},
				{Selector: &metav1.LabelSelector{
					MatchLabels: map[string]string{"dr-syncer.io/replicate": "true"},
					MatchExpressions: []metav1.LabelSelectorRequirement{
						{Key: "tier", Operator: metav1.LabelSelectorOpIn, Values: []string{"frontend", "backend"}},
						{Key: "scratch", Operator: metav1.LabelSelectorOpDoesNotExist},
					},
				}},
			},
			Resources: Resources{
				Include: []KindRef{
					{Kind: "ConfigMap"}, {Kind: "Secret"}, {Kind: "Service"}, {Kind: "PersistentVolumeClaim"},
					{Group: "apps", Kind: "Deployment"}, {Group: "apps", Kind: "StatefulSet"},
					{Group: "example.com", Kind: "Widget"},
				},
				Exclude: []KindRef{{Group: "batch", Kind: "CronJob"}},
				ExcludeObjects: []ObjectFilter{
					{Kind: &KindRef{Kind: "ConfigMap"}, Name: "*-cache"},
					{Namespace: "shop", Selector: &metav1.LabelSelector{
						MatchLabels: map[string]string{"app.kubernetes.io/part-of": "scratch"},
					}},
				},
				DisableDefaultExclusions: []string{"default-service-account"},
			},
			Secrets: Secrets{Mode: SecretModeEncrypt, Recipients: []string{
				"age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p",
				"age1lggyhqrw2nlhcxprm67z43rta597azn8gknawjehu9d9dl0jq3yqqvfafg",
			}},
			StorageClasses: []NameMapping{{Source: "fast-ssd", Target: "standard"}},
			AccessModes:    []NameMapping{{Source: "ReadWriteOnce", Target: "ReadWriteMany"}},
			Replication:    Replication{Mode: ReplicationModeScheduled, Schedule: "30 2 * * MON-FRI", TimeZone: "Europe/Berlin"},
			Volumes: Volumes{
				Selector:    &metav1.LabelSelector{MatchLabels: map[string]string{"backup": "true"}},
				Unmounted:   UnmountedMount,
				Concurrency: 4,
				Retries:     ptr(5),
				InPlace:     true,
				Agent:       VolumeAgent{Port: 2022, Address: AgentAddressExternalIP},
			},
			Review: Review{Enabled: true, Branch: "snapshots/prod-eu"},
		},
	}
	if diff := cmp.Diff(want, c); diff != "" {
		t.Errorf("decoded config (-want +got):\n%s", diff)
	}
}

func TestDecodeDefaults(t *testing.T) {
	c, err := Decode(FileName, []byte(`apiVersion: dr-syncer.io/v1alpha1
kind: SyncConfig
metadata: {name: m}
spec:
  source: {name: a}
  target: {name: b}
  namespaces: [{source: shop}]
  secrets: {recipients: [age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p]}
`))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Spec.Namespaces[0].Target; got != "shop" {
		t.Errorf("target defaults to the source: got %q", got)
	}
	if c.Spec.Secrets.Mode != SecretModeEncrypt || c.Spec.Replication.Mode != ReplicationModeManual {
		t.Errorf("modes default to encrypt and manual: got %q, %q", c.Spec.Secrets.Mode, c.Spec.Replication.Mode)
	}
}

// TestDecodeInvalid decodes each malformed file and compares the whole error
// text with testdata/invalid/<name>.err.
func TestDecodeInvalid(t *testing.T) {
	for _, name := range []string{
		"unknown-field-top",          // misspelt top-level field, with a suggestion
		"unknown-field-nested",       // misspelt field in a list item
		"unknown-field-selector",     // misspelt fields inside a metav1.LabelSelector
		"wrong-type",                 // list for a string, mapping for a list, integer for a string
		"duplicate-key",              // the same key twice in one mapping
		"bad-apiversion",             // another version: nothing else is checked
		"bad-kind",                   // another kind altogether
		"empty",                      // only a comment
		"not-a-mapping",              // a list document
		"two-documents",              // a second document
		"syntax-error",               // not YAML
		"several-errors",             // decoding and validation errors, all, in line order
		"bad-dns-name",               // names that are not DNS labels or subdomains
		"duplicate-target",           // two sources into one target; one source twice
		"reserved-target",            // kube-system as target; source and selector; neither
		"bad-recipient",              // malformed, a secret key (not quoted back), ssh, duplicate
		"recipients-missing",         // encrypt without recipients
		"scheduled-without-schedule", // mode scheduled, no schedule
		"schedule-not-scheduled",     // schedule and time zone without mode scheduled
		"bad-schedule",               // not five cron fields
		"bad-timezone",               // unknown IANA zone
		"bad-selector",               // invalid label key, value and operator
		"bad-resources",              // kinds, groups, globs, exclusion IDs, access modes
		"bad-apply",                  // recreate of a PVC or CRD, a prune share over 100
		"bad-volumes",                // selector operator, policy case, limits, port, address
		"bad-review",                 // a review branch git would refuse
		"review-branch-main",         // review branch = the followed branch
	} {
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join("testdata/invalid", name+".yaml"))
			if err != nil {
				t.Fatal(err)
			}
			c, err := Decode(FileName, data)
			if err == nil {
				t.Fatalf("want an error, got none (config %+v)", c)
			}
			if c != nil {
				t.Errorf("want no config with an error")
			}
			for _, e := range unjoin(err) {
				var fe *FieldError
				if !errors.As(e, &fe) {
					t.Errorf("error %q is not a *FieldError", e)
				} else if fe.File != FileName {
					t.Errorf("error %q does not name the file", e)
				}
			}
			if strings.Contains(err.Error(), "AGE-SECRET-KEY-1Q") {
				t.Errorf("error quotes a secret key:\n%v", err)
			}
			golden(t, filepath.Join("testdata/invalid", name+".err"), err.Error()+"\n")
		})
	}
}

func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

func TestLoadNamesPath(t *testing.T) {
	_, err := Load("testdata/does-not-exist.yaml")
	if err == nil || !strings.Contains(err.Error(), "testdata/does-not-exist.yaml") || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("want an error naming the path and wrapping ErrNotExist, got %v", err)
	}
	_, err = Load("testdata/invalid/wrong-type.yaml")
	if err == nil || !strings.HasPrefix(err.Error(), "testdata/invalid/wrong-type.yaml:") {
		t.Errorf("want errors prefixed by the path, got %v", err)
	}
}

// TestValidateInGo checks a config built in Go: paths without positions,
// defaults not needed.
func TestValidateInGo(t *testing.T) {
	c := &SyncConfig{
		APIVersion: APIVersion,
		Kind:       Kind,
		Metadata:   Metadata{Name: "m"},
		Spec: Spec{
			Source:     ClusterRef{Name: "a"},
			Target:     ClusterRef{Name: "b"},
			Namespaces: []NamespaceMapping{{Source: "x"}, {Source: "y", Target: "x"}},
			Secrets:    Secrets{Mode: SecretModeExclude},
		},
	}
	err := c.Validate()
	want := `spec.namespaces[1].target: namespace "x" is already the target of spec.namespaces[0]: two source namespaces would overwrite each other`
	if err == nil || err.Error() != want {
		t.Errorf("got %v\nwant %s", err, want)
	}
	c.Spec.Namespaces[1].Target = "z"
	if err := c.Validate(); err != nil {
		t.Errorf("want valid, got %v", err)
	}
}

func TestSuggest(t *testing.T) {
	known := []string{"source", "target", "selector", "matchLabels", "matchExpressions"}
	for in, want := range map[string]string{
		"sourc":       "source",
		"Source":      "source",
		"targte":      "target",
		"matchlabels": "matchLabels",
		"selecter":    "selector",
		"namespace":   "",
		"x":           "",
	} {
		if got := suggest(in, known); got != want {
			t.Errorf("suggest(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestDecodeAliases(t *testing.T) {
	const head = "apiVersion: dr-syncer.io/v1alpha1\nkind: SyncConfig\nmetadata: {name: m}\n" +
		"spec:\n  source: &c {name: prod}\n  target: *c\n  secrets: {mode: exclude}\n"
	c, err := Decode(FileName, []byte(head+"  namespaces: [{source: shop}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Spec.Target.Name != "prod" {
		t.Errorf("alias not followed: target %q", c.Spec.Target.Name)
	}

	// Nested aliases must not expand without bound.
	bomb := head + "  x: &a {source: a}\n  namespaces: [" + strings.Repeat("*a, ", 5000) + "*a]\n"
	_, err = Decode(FileName, []byte(bomb))
	if err == nil || !strings.Contains(err.Error(), "more than 1000 aliases") {
		t.Errorf("want an alias limit error, got %v", err)
	}
}

// TestDecoderTypes runs the walker over every kind of Go value it supports,
// beyond those SyncConfig uses today.
func TestDecoderTypes(t *testing.T) {
	type inner struct {
		S string `json:"s"`
	}
	type doc struct {
		B      bool              `json:"b"`
		I      int32             `json:"i"`
		M      map[string]string `json:"m,omitempty"`
		P      *inner            `json:"p,omitempty"`
		L      []string          `json:"l"`
		NoTag  string
		Hidden string `json:"-"`
	}
	decode := func(src string) (doc, string) {
		var root yaml.Node
		if err := yaml.Unmarshal([]byte(src), &root); err != nil {
			t.Fatal(err)
		}
		d := &decoder{pos: map[string]position{}}
		var v doc
		d.decode(root.Content[0], reflect.ValueOf(&v).Elem(), "", nil)
		if err := d.errs.inFile("f").join(); err != nil {
			return v, err.Error()
		}
		return v, ""
	}

	v, errs := decode("{b: true, i: -7, m: {a: x}, p: {s: y}, l: [u, w], NoTag: z}")
	if errs != "" {
		t.Error(errs)
	}
	want := doc{B: true, I: -7, M: map[string]string{"a": "x"}, P: &inner{S: "y"}, L: []string{"u", "w"}, NoTag: "z"}
	if diff := cmp.Diff(want, v); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if v, _ := decode("{p: null, l: ~}"); v.P != nil || v.L != nil {
		t.Errorf("null must leave zero values, got %+v", v)
	}

	_, got := decode(`b: "yes"
i: 4294967296
m: {a: 1, 2: b, a: c}
l: [x, [y]]
Hidden: h
<<: {s: 1}
p: {s: 1.5}
`)
	wantErr := `f:1:4: b: want a boolean, got a string
f:2:4: i: want an integer that fits int32
f:3:8: m[a]: want a string, got an integer (quote it to make it a string)
f:3:11: m: want a string key, got an integer
f:3:17: m[a]: duplicate key (first at line 3)
f:4:8: l[1]: want a string, got a list
f:5:1: Hidden: unknown field
f:6:1: merge keys (<<) are not supported
f:7:8: p.s: want a string, got a number (quote it to make it a string)`
	if got != wantErr {
		t.Errorf("got:\n%s\nwant:\n%s", got, wantErr)
	}
}

func ptr[T any](v T) *T { return &v }
