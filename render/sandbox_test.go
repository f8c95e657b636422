package render

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"

	"sigs.k8s.io/kustomize/api/types"
)

// Every field of a kustomization is known to the sandbox: a kustomize
// upgrade that adds one fails here until kustomizationFields says what the
// field does (and sandbox.go checks the files it names).
func TestEveryKustomizationFieldIsClassified(t *testing.T) {
	var names []string
	var collect func(reflect.Type)
	collect = func(typ reflect.Type) {
		for i := range typ.NumField() {
			f := typ.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "" && f.Anonymous {
				collect(f.Type)
				continue
			}
			names = append(names, name)
		}
	}
	collect(reflect.TypeFor[types.Kustomization]())
	for _, n := range names {
		if _, ok := kustomizationFields[n]; !ok {
			t.Errorf("field %q of types.Kustomization is not in kustomizationFields", n)
		}
	}
	if len(names) != len(kustomizationFields) {
		t.Errorf("types.Kustomization has %d fields, kustomizationFields %d", len(names), len(kustomizationFields))
	}
}

// The sandbox refuses what would read the host, the network, or run a
// program, and says which file asks for it; nothing is fetched or run.
func TestSandbox(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Write([]byte("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: fetched\n"))
	}))
	defer srv.Close()
	marker := filepath.Join(t.TempDir(), "ran")
	script := filepath.Join(t.TempDir(), "plugin.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\ntouch "+marker+"\ncat\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	const overlay = "overlays/dr/kustomization.yaml"

	for _, tc := range []struct {
		name  string
		files map[string]string
		want  string // the error holds overlay + ": " + want
		file  string // when the error is about another file
	}{{
		name:  "parent path",
		files: map[string]string{overlay: "resources:\n- generated\n- ../../../etc/passwd\n"},
		want:  "resources[1]: ../../../etc/passwd: outside the repository",
	}, {
		name:  "absolute path",
		files: map[string]string{overlay: "resources:\n- generated\n- /etc/passwd\n"},
		want:  "resources[1]: /etc/passwd: an absolute path is refused",
	}, {
		name:  "URL resource",
		files: map[string]string{overlay: "resources:\n- generated\n- " + srv.URL + "/cm.yaml\n"},
		want:  "resources[1]: " + srv.URL + "/cm.yaml: remote resources are refused",
	}, {
		name:  "URL base",
		files: map[string]string{overlay: "resources:\n- generated\n- https://github.com/kubernetes-sigs/kustomize//examples/helloWorld?ref=v5.0.0\n"},
		want:  "resources[1]: https://github.com/kubernetes-sigs/kustomize//examples/helloWorld?ref=v5.0.0: remote resources are refused",
	}, {
		name:  "github base without scheme",
		files: map[string]string{overlay: "resources:\n- generated\n- github.com/org/repo/base?ref=main\n"},
		want:  "resources[1]: github.com/org/repo/base?ref=main: remote resources are refused",
	}, {
		name:  "scp-like git base",
		files: map[string]string{overlay: "bases:\n- git@example.com:org/repo.git\nresources:\n- generated\n"},
		want:  "bases[0]: git@example.com:org/repo.git: remote resources are refused",
	}, {
		name:  "URL patch",
		files: map[string]string{overlay: "resources:\n- generated\npatches:\n- path: " + srv.URL + "/patch.yaml\n"},
		want:  "patches[0].path: " + srv.URL + "/patch.yaml: remote resources are refused",
	}, {
		name:  "URL component",
		files: map[string]string{overlay: "resources:\n- generated\ncomponents:\n- git::https://example.com/org/repo.git\n"},
		want:  "components[0]: git::https://example.com/org/repo.git: remote resources are refused",
	}, {
		name:  "generator reads the host",
		files: map[string]string{overlay: "resources:\n- generated\nconfigMapGenerator:\n- name: x\n  files:\n  - passwd=/etc/passwd\n"},
		want:  "configMapGenerator[0]: /etc/passwd: an absolute path is refused",
	}, {
		name: "exec KRM function",
		files: map[string]string{
			overlay:               "resources:\n- generated\ntransformers:\n- fn.yaml\n",
			"overlays/dr/fn.yaml": "apiVersion: example.com/v1\nkind: Evil\nmetadata:\n  name: evil\n  annotations:\n    config.kubernetes.io/function: |\n      exec:\n        path: " + script + "\n",
		},
		want: "transformers[0]: overlays/dr/fn.yaml: Evil (apiVersion \"example.com/v1\") is not a builtin plugin: plugins, exec and KRM functions are disabled",
	}, {
		name:  "container KRM function inline",
		files: map[string]string{overlay: "resources:\n- generated\ngenerators:\n- |\n  apiVersion: example.com/v1\n  kind: Gen\n  metadata:\n    name: gen\n    annotations:\n      config.kubernetes.io/function: |\n        container:\n          image: example.com/evil\n"},
		want:  "generators[0]: Gen (apiVersion \"example.com/v1\") is not a builtin plugin",
	}, {
		name:  "helmCharts",
		files: map[string]string{overlay: "resources:\n- generated\nhelmCharts:\n- name: nginx\n  repo: https://charts.example.com\n"},
		want:  "helmCharts: Helm charts are not rendered: render runs no programs",
	}, {
		name:  "helm generator",
		files: map[string]string{overlay: "resources:\n- generated\ngenerators:\n- |\n  apiVersion: builtin\n  kind: HelmChartInflationGenerator\n  metadata:\n    name: x\n  chartName: nginx\n"},
		want:  "generators[0]: HelmChartInflationGenerator: Helm charts are not rendered",
	}, {
		name:  "builtin transformer with a URL",
		files: map[string]string{overlay: "resources:\n- generated\ntransformers:\n- |\n  apiVersion: builtin\n  kind: PatchTransformer\n  metadata:\n    name: x\n  path: " + srv.URL + "/p.yaml\n"},
		want:  "transformers[0]: path: " + srv.URL + "/p.yaml: remote resources are refused",
	}, {
		name:  "openapi",
		files: map[string]string{overlay: "resources:\n- generated\nopenapi:\n  path: schema.json\n"},
		want:  "openapi: a custom OpenAPI schema is not supported",
	}, {
		name: "nested kustomization",
		files: map[string]string{
			overlay:                                "resources:\n- generated\n- extra\n",
			"overlays/dr/extra/kustomization.yaml": "resources:\n- " + srv.URL + "/x.yaml\n",
		},
		file: "overlays/dr/extra/kustomization.yaml",
		want: "resources[0]: " + srv.URL + "/x.yaml: remote resources are refused",
	}, {
		name:  "not committed",
		files: map[string]string{overlay: "resources:\n- generated\n- missing.yaml\n"},
		want:  "resources[1]: missing.yaml: not in the commit",
	}, {
		name:  "unknown field",
		files: map[string]string{overlay: "resources:\n- generated\nresourcez:\n- x.yaml\n"},
		want:  "invalid Kustomization",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			repo, _, cfg := goldenRepo(t, "user-patch")
			files := map[string][]byte{}
			for p, s := range tc.files {
				files[p] = []byte(s)
			}
			h := commit(t, repo, files, tc.name)
			_, err := Build(context.Background(), repo, h.String(), cfg)
			file := tc.file
			if file == "" {
				file = overlay
			}
			if err == nil || !strings.Contains(err.Error(), file+": "+tc.want) {
				t.Fatalf("error:\n%v\nwant it to hold:\n%s: %s", err, file, tc.want)
			}
			t.Log(err)
			if n := hits.Load(); n > 0 {
				t.Errorf("%d HTTP requests", n)
			}
			if _, err := os.Stat(marker); err == nil {
				t.Error("the plugin ran")
			}
		})
	}
}

// A panic inside kustomize is an error naming the overlay.
func TestKustomizePanic(t *testing.T) {
	kustomizeHook = func() { panic("boom") }
	t.Cleanup(func() { kustomizeHook = nil })
	repo, head, cfg := goldenRepo(t, "shop")
	_, err := Build(context.Background(), repo, head, cfg)
	if err == nil || !strings.Contains(err.Error(), "overlays/dr/kustomization.yaml: kustomize build: kustomize panicked: boom") {
		t.Fatalf("error: %v", err)
	}
}

// The snapshot holds objects only: a kustomization (or any other file) in
// it is an error, since render derives the snapshot's kustomizations.
func TestSnapshotHoldsObjectsOnly(t *testing.T) {
	for _, tc := range []struct{ path, want string }{
		{"snapshots/prod/shop/kustomization.yaml", "snapshots/prod/shop/kustomization.yaml: the snapshot holds no kustomization"},
		{"snapshots/prod/kustomization.yaml", "snapshots/prod/kustomization.yaml: the snapshot holds no kustomization"},
		{"snapshots/prod/shop/ConfigMap/notes.txt", "snapshots/prod/shop/ConfigMap/notes.txt: not an object file of the snapshot layout"},
	} {
		repo, _, cfg := goldenRepo(t, "user-patch")
		h := commit(t, repo, map[string][]byte{tc.path: []byte("resources: []\n")}, "junk")
		_, err := Build(context.Background(), repo, h.String(), cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", tc.path, err, tc.want)
		}
	}
}

func TestMissingOverlay(t *testing.T) {
	repo, _, cfg := goldenRepo(t, "shop")
	cfg.Spec.Target.Name = "elsewhere"
	_, err := Build(context.Background(), repo, "main", cfg)
	if err == nil || !strings.Contains(err.Error(), "overlays/elsewhere/kustomization.yaml: not in the commit") {
		t.Fatalf("error: %v", err)
	}
}

func TestIsRemote(t *testing.T) {
	for _, e := range []string{
		"https://example.com/x.yaml", "HTTP://example.com/x", "http:x", "ssh://git@example.com/repo",
		"git::https://example.com/repo", "file:///tmp/repo", "git@github.com:org/repo", "github.com/org/repo",
		"GitHub.com:org/repo", "x/../https://y",
	} {
		if !isRemote(e) {
			t.Errorf("isRemote(%q) = false", e)
		}
	}
	for _, e := range []string{"base", "../base", "system:controller.yaml", "a/b.yaml", "github.community/x"} {
		if isRemote(e) {
			t.Errorf("isRemote(%q) = true", e)
		}
	}
}
