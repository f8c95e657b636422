package policies

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

// cleanCases are the golden cases under testdata/clean: one per rule (named
// as the rule), and variants named <rule>-<variant>.
var cleanCases = []string{
	"status",
	"server-metadata",
	"owner-references",
	"finalizers",
	"applied-annotations",
	"namespace-name-label",
	"service-cluster-ip",
	"service-cluster-ip-headless",
	"service-node-ports",
	"service-node-ports-udp",
	"service-node-ports-no-managed-fields",
	"service-ip-families",
	"pvc-binding",
	"pvc-data-source",
	"pod-node",
	"pod-priority",
	"pod-ephemeral-containers",
	"job-generated-selector",
	"job-generated-selector-manual",
	"service-account-token-refs",
	"daemonset-template-generation",
	"empty-metadata-maps",
}

// readObject reads an object the way it comes from the apiserver: JSON
// decoded by the unstructured scheme (integers as int64).
func readObject(t *testing.T, path string) *unstructured.Unstructured {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	j, err := yaml.YAMLToJSON(data)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	u := &unstructured.Unstructured{}
	if err := u.UnmarshalJSON(j); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return u
}

func TestClean(t *testing.T) {
	for _, name := range cleanCases {
		t.Run(name, func(t *testing.T) {
			before := readObject(t, filepath.Join("testdata/clean", name+".before.yaml"))
			got := Clean(before)
			out, err := yaml.Marshal(got.Object)
			if err != nil {
				t.Fatal(err)
			}
			golden(t, filepath.Join("testdata/clean", name+".after.yaml"), string(out))

			if again := Clean(got); !cmp.Equal(got.Object, again.Object) {
				t.Errorf("Clean is not idempotent (-once +twice):\n%s", cmp.Diff(got.Object, again.Object))
			}
		})
	}
}

func TestCleanRulesHaveCases(t *testing.T) {
	for _, r := range cleanRules {
		if !slices.Contains(cleanCases, r.name) {
			t.Errorf("rule %q has no golden case testdata/clean/%s.before.yaml", r.name, r.name)
		}
	}
	for _, c := range cleanCases {
		if !slices.ContainsFunc(cleanRules, func(r cleanRule) bool {
			return c == r.name || strings.HasPrefix(c, r.name+"-")
		}) {
			t.Errorf("case %q is named after no rule", c)
		}
	}
	files, _ := filepath.Glob("testdata/clean/*.before.yaml")
	for _, f := range files {
		if name := strings.TrimSuffix(filepath.Base(f), ".before.yaml"); !slices.Contains(cleanCases, name) {
			t.Errorf("%s is not in cleanCases", f)
		}
	}
}

func TestCleanDoesNotModifyInput(t *testing.T) {
	for _, name := range cleanCases {
		obj := readObject(t, filepath.Join("testdata/clean", name+".before.yaml"))
		orig := obj.DeepCopy()
		Clean(obj)
		if diff := cmp.Diff(orig.Object, obj.Object); diff != "" {
			t.Errorf("%s: Clean modified its input (-before +after):\n%s", name, diff)
		}
	}
}
