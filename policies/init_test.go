package policies

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

var initGoldenOptions = InitOptions{
	Name:            "prod-eu-to-dr-eu",
	Source:          "prod-eu",
	Target:          "dr-eu",
	NamespaceMap:    []NameMapping{{Source: "shop", Target: "shop-dr"}, {Source: "billing"}},
	StorageClassMap: []NameMapping{{Source: "fast-ssd", Target: "standard"}},
	Recipients:      []string{"age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"},
}

func TestInitFileGolden(t *testing.T) {
	out, err := InitFile(initGoldenOptions)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "testdata/init/dr-syncer.yaml", string(out))
}

// TestInitFileRoundTrip decodes what InitFile writes and compares it with
// the spec the options describe.
func TestInitFileRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts InitOptions
		want Spec
	}{
		{"everything", initGoldenOptions, Spec{
			Source: ClusterRef{Name: "prod-eu"},
			Target: ClusterRef{Name: "dr-eu"},
			Namespaces: []NamespaceMapping{
				{Source: "shop", Target: "shop-dr"},
				{Source: "billing", Target: "billing"},
			},
			Secrets:        Secrets{Mode: SecretModeEncrypt, Recipients: initGoldenOptions.Recipients},
			StorageClasses: []NameMapping{{Source: "fast-ssd", Target: "standard"}},
			Replication:    Replication{Mode: ReplicationModeManual},
		}},
		{"only clusters", InitOptions{Source: "a", Target: "b"}, Spec{
			Source: ClusterRef{Name: "a"},
			Target: ClusterRef{Name: "b"},
			Namespaces: []NamespaceMapping{{Selector: &metav1.LabelSelector{
				MatchLabels: map[string]string{"dr-syncer.io/replicate": "true"},
			}}},
			Secrets:     Secrets{Mode: SecretModeExclude},
			Replication: Replication{Mode: ReplicationModeManual},
		}},
		{"names that need quoting in YAML", InitOptions{
			Source:       "123",
			Target:       "true",
			NamespaceMap: []NameMapping{{Source: "0755", Target: "null"}, {Source: "yes"}},
		}, Spec{
			Source:      ClusterRef{Name: "123"},
			Target:      ClusterRef{Name: "true"},
			Namespaces:  []NamespaceMapping{{Source: "0755", Target: "null"}, {Source: "yes", Target: "yes"}},
			Secrets:     Secrets{Mode: SecretModeExclude},
			Replication: Replication{Mode: ReplicationModeManual},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := InitFile(tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			c, err := Decode(FileName, out)
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			if diff := cmp.Diff(tc.want, c.Spec); diff != "" {
				t.Errorf("decoded spec (-want +got):\n%s", diff)
			}
			wantName := tc.opts.Name
			if wantName == "" {
				wantName = tc.opts.Source + "-to-" + tc.opts.Target
			}
			if c.Metadata.Name != wantName {
				t.Errorf("metadata.name = %q", c.Metadata.Name)
			}
			for _, section := range []string{"source:", "target:", "namespaces:", "resources:", "secrets:", "storageClasses:", "accessModes:", "replication:"} {
				if !strings.Contains(string(out), section) {
					t.Errorf("no %s section", section)
				}
			}
		})
	}
}

func TestInitFileInvalid(t *testing.T) {
	_, err := InitFile(InitOptions{
		Source:       "Prod",
		Target:       "dr",
		NamespaceMap: []NameMapping{{Source: "a", Target: "x"}, {Source: "b", Target: "x"}},
	})
	want := `dr-syncer.yaml: spec.source.name: invalid cluster name "Prod"`
	if err == nil || !strings.HasPrefix(err.Error(), want) || !strings.Contains(err.Error(), `spec.namespaces[1].target: namespace "x" is already the target`) {
		t.Errorf("got %v, want an error starting %s and naming the duplicate target", err, want)
	}
}

func TestInitFileInvalidName(t *testing.T) {
	_, err := InitFile(InitOptions{Name: "Bad_Name", Source: "a", Target: "b"})
	if err == nil || !strings.Contains(err.Error(), `metadata.name: invalid name "Bad_Name"`) {
		t.Errorf("want an error about metadata.name, got %v", err)
	}
}
