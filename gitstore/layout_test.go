package gitstore

import (
	"path"
	"strings"
	"testing"

	pathvalidation "k8s.io/apimachinery/pkg/api/validation/path"
	"k8s.io/apimachinery/pkg/util/validation"
)

func TestObjectPath(t *testing.T) {
	for _, tc := range []struct {
		source string
		id     ObjectID
		want   string // "" means an error
	}{
		{"prod", ObjectID{"", "ConfigMap", "default", "app-config"}, "snapshots/prod/default/ConfigMap/app-config.yaml"},
		{"prod", ObjectID{"apps", "Deployment", "shop", "web"}, "snapshots/prod/shop/apps.Deployment/web.yaml"},
		{"prod-eu", ObjectID{"apiextensions.k8s.io", "CustomResourceDefinition", "", "widgets.example.com"},
			"snapshots/prod-eu/_cluster/apiextensions.k8s.io.CustomResourceDefinition/widgets.example.com.yaml"},
		{"prod", ObjectID{"", "Namespace", "", "shop"}, "snapshots/prod/_cluster/Namespace/shop.yaml"},
		{"prod", ObjectID{"rbac.authorization.k8s.io", "ClusterRole", "", "system:aggregate-to-admin"},
			"snapshots/prod/_cluster/rbac.authorization.k8s.io.ClusterRole/system:aggregate-to-admin.yaml"},
		{"prod", ObjectID{"", "Secret", "a", "under_score"}, "snapshots/prod/a/Secret/under_score.yaml"},
		// hostile names stay inside their directory and cannot collide
		{"prod", ObjectID{"", "ConfigMap", "a", "../x"}, "snapshots/prod/a/ConfigMap/%2E.%2Fx.yaml"},
		{"prod", ObjectID{"", "ConfigMap", "a", "a/b"}, "snapshots/prod/a/ConfigMap/a%2Fb.yaml"},
		{"prod", ObjectID{"", "ConfigMap", "a", "."}, "snapshots/prod/a/ConfigMap/%2E.yaml"},
		{"prod", ObjectID{"", "ConfigMap", "a", ".."}, "snapshots/prod/a/ConfigMap/%2E..yaml"},
		{"prod", ObjectID{"", "ConfigMap", "a", ".hidden"}, "snapshots/prod/a/ConfigMap/%2Ehidden.yaml"},
		{"prod", ObjectID{"", "ConfigMap", "a", ".git"}, "snapshots/prod/a/ConfigMap/%2Egit.yaml"},
		{"prod", ObjectID{"", "ConfigMap", "a", "%41"}, "snapshots/prod/a/ConfigMap/%2541.yaml"},
		{"prod", ObjectID{"", "ConfigMap", "a", "A"}, "snapshots/prod/a/ConfigMap/%41.yaml"},
		{"prod", ObjectID{"", "ConfigMap", "a", "ünï"}, "snapshots/prod/a/ConfigMap/%C3%BCn%C3%AF.yaml"},
		{"prod", ObjectID{"", "ConfigMap", "a", "a b\x00c\n"}, "snapshots/prod/a/ConfigMap/a%20b%00c%0A.yaml"},
		{"prod", ObjectID{"", "ConfigMap", "a", "x.yaml"}, "snapshots/prod/a/ConfigMap/x.yaml.yaml"},
		{"prod", ObjectID{"", "ConfigMap", "a", "GIT~1"}, "snapshots/prod/a/ConfigMap/%47%49%54%7E1.yaml"},
		// errors
		{"", ObjectID{"", "ConfigMap", "a", "x"}, ""},
		{"Prod", ObjectID{"", "ConfigMap", "a", "x"}, ""},
		{"prod/x", ObjectID{"", "ConfigMap", "a", "x"}, ""},
		{"..", ObjectID{"", "ConfigMap", "a", "x"}, ""},
		{"prod", ObjectID{"", "", "a", "x"}, ""},
		{"prod", ObjectID{"", "Config.Map", "a", "x"}, ""},
		{"prod", ObjectID{"", "Config/Map", "a", "x"}, ""},
		{"prod", ObjectID{"", "ConfigMap", "a", ""}, ""},
		{"prod", ObjectID{"", "ConfigMap", "_cluster", "x"}, ""},
		{"prod", ObjectID{"", "ConfigMap", "../a", "x"}, ""},
		{"prod", ObjectID{"", "ConfigMap", "A", "x"}, ""},
		{"prod", ObjectID{"Apps", "Deployment", "a", "x"}, ""},
		{"prod", ObjectID{"apps/x", "Deployment", "a", "x"}, ""},
		{"prod", ObjectID{".apps", "Deployment", "a", "x"}, ""},
	} {
		got, err := ObjectPath(tc.source, tc.id)
		if tc.want == "" {
			if err == nil {
				t.Errorf("ObjectPath(%q, %+v) = %q, want an error", tc.source, tc.id, got)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ObjectPath(%q, %+v) = %q, %v; want %q", tc.source, tc.id, got, err, tc.want)
			continue
		}
		source, id, err := ParseObjectPath(got)
		if err != nil || source != tc.source || id != tc.id {
			t.Errorf("ParseObjectPath(%q) = %q, %+v, %v; want %q, %+v", got, source, id, err, tc.source, tc.id)
		}
		if err := validatePath(got); err != nil {
			t.Errorf("ObjectPath(%q, %+v) = %q, not a valid repository path: %v", tc.source, tc.id, got, err)
		}
	}
}

func TestParseObjectPathRejects(t *testing.T) {
	for _, p := range []string{
		"",
		"snapshots/prod/a/ConfigMap/x",             // no .yaml
		"snapshots/prod/a/ConfigMap/x.yml",         // other extension
		"snapshots/prod/a/ConfigMap/.yaml",         // empty name
		"snapshots/prod/a/ConfigMap/%61.yaml",      // 'a' need not be escaped
		"snapshots/prod/a/ConfigMap/%2e.yaml",      // lowercase hex
		"snapshots/prod/a/ConfigMap/%2.yaml",       // truncated escape
		"snapshots/prod/a/ConfigMap/%zz.yaml",      // bad escape
		"snapshots/prod/a/ConfigMap/A.yaml",        // uppercase must be escaped
		"snapshots/prod/a/ConfigMap/.hidden.yaml",  // leading dot must be escaped
		"snapshots/prod/a/ConfigMap/...yaml",       // ".." unescaped
		"snapshots/prod/a/ConfigMap/a b.yaml",      // space must be escaped
		"snapshots/prod/a/ConfigMap/a/b.yaml",      // too deep
		"snapshots/prod/a/b.yaml",                  // too shallow
		"snapshots/prod/_cluster/.Kind/x.yaml",     // empty group
		"snapshots/prod/a/apps./x.yaml",            // empty kind
		"snapshots/prod/a/Apps.Deployment/x.yaml",  // group not a DNS subdomain
		"snapshots/Prod/a/ConfigMap/x.yaml",        // source not a DNS label
		"snapshots/prod/A/ConfigMap/x.yaml",        // namespace not a DNS label
		"snapshots/prod//ConfigMap/x.yaml",         // empty namespace
		"snapshots/prod/_Cluster/ConfigMap/x.yaml", // not the cluster marker
		"overlays/prod/a/ConfigMap/x.yaml",         // not a snapshot
		"/snapshots/prod/a/ConfigMap/x.yaml",
	} {
		if source, id, err := ParseObjectPath(p); err == nil {
			t.Errorf("ParseObjectPath(%q) = %q, %+v; want an error", p, source, id)
		}
	}
}

func TestSnapshotPrefix(t *testing.T) {
	p, err := ObjectPath("prod", ObjectID{Kind: "ConfigMap", Namespace: "a", Name: "b"})
	if err != nil {
		t.Fatal(err)
	}
	if want := "snapshots/prod/"; SnapshotPrefix("prod") != want || !strings.HasPrefix(p, want) {
		t.Errorf("SnapshotPrefix(prod) = %q, object path %q; want prefix %q", SnapshotPrefix("prod"), p, want)
	}
}

func FuzzObjectPath(f *testing.F) {
	f.Add("prod", "", "ConfigMap", "default", "cm")
	f.Add("prod", "apps", "Deployment", "shop", "../x")
	f.Add("prod", "rbac.authorization.k8s.io", "ClusterRole", "", "system:aggregate-to-admin")
	f.Add("prod", "", "ConfigMap", "a", ".hidden")
	f.Add("prod", "", "ConfigMap", "a", "%41")
	f.Add("prod", "", "ConfigMap", "a", "a/b")
	f.Add("prod", "", "ConfigMap", "a", "..")
	f.Add("prod", "", "ConfigMap", "a", "ünï\x00")
	f.Fuzz(func(t *testing.T, source, group, kind, namespace, name string) {
		id := ObjectID{Group: group, Kind: kind, Namespace: namespace, Name: name}
		p, err := ObjectPath(source, id)
		if err != nil {
			if kubernetesAllows(source, id) {
				t.Fatalf("ObjectPath(%q, %+v): %v; Kubernetes allows this object", source, id, err)
			}
			return
		}
		for seg := range strings.SplitSeq(p, "/") {
			if seg == "" || seg == "." || seg == ".." || isDotGit(seg) {
				t.Fatalf("ObjectPath(%q, %+v) = %q: segment %q", source, id, p, seg)
			}
		}
		ns := namespace
		if ns == "" {
			ns = "_cluster"
		}
		dir := "snapshots/" + source + "/" + ns + "/" + kindDir(group, kind) + "/"
		rest, ok := strings.CutPrefix(p, dir)
		if !ok || rest == "" || strings.Contains(rest, "/") || path.Clean(p) != p {
			t.Fatalf("ObjectPath(%q, %+v) = %q, not a file directly inside %q", source, id, p, dir)
		}
		if path.Dir(p)+"/" != dir {
			t.Fatalf("ObjectPath(%q, %+v) = %q escapes %q", source, id, p, dir)
		}
		if err := validatePath(p); err != nil {
			t.Fatalf("ObjectPath(%q, %+v) = %q: %v", source, id, p, err)
		}
		gotSource, gotID, err := ParseObjectPath(p)
		if err != nil || gotSource != source || gotID != id {
			t.Fatalf("ParseObjectPath(%q) = %q, %+v, %v; want %q, %+v", p, gotSource, gotID, err, source, id)
		}
	})
}

// FuzzParseObjectPath checks that ParseObjectPath accepts only what
// ObjectPath produces: every path it parses maps back to itself.
func FuzzParseObjectPath(f *testing.F) {
	f.Add("snapshots/prod/default/ConfigMap/cm.yaml")
	f.Add("snapshots/prod/_cluster/apps.Deployment/%2E..yaml")
	f.Add("snapshots/prod/a/ConfigMap/%61.yaml")
	f.Fuzz(func(t *testing.T, p string) {
		source, id, err := ParseObjectPath(p)
		if err != nil {
			return
		}
		back, err := ObjectPath(source, id)
		if err != nil || back != p {
			t.Fatalf("ParseObjectPath(%q) = %q, %+v; ObjectPath gives %q, %v", p, source, id, back, err)
		}
	})
}

// kubernetesAllows reports whether the apiserver accepts an object so
// named, by Kubernetes' own validation: namespaces and cluster names are DNS
// labels, groups DNS subdomains, kinds DNS-1035 labels once lowercased (as
// CRDs require), and names at least valid path segments (the loosest rule,
// that of RBAC objects; most kinds want DNS subdomains).
func kubernetesAllows(source string, id ObjectID) bool {
	return len(validation.IsDNS1123Label(source)) == 0 &&
		(id.Namespace == "" || len(validation.IsDNS1123Label(id.Namespace)) == 0) &&
		(id.Group == "" || len(validation.IsDNS1123Subdomain(id.Group)) == 0) &&
		len(validation.IsDNS1035Label(strings.ToLower(id.Kind))) == 0 &&
		id.Name != "" && len(pathvalidation.IsValidPathSegmentName(id.Name)) == 0
}
