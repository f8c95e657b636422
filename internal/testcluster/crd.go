package testcluster

import (
	"fmt"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// InstallCRDs creates CustomResourceDefinitions, given as objects or as
// files and directories of YAML (paths), and waits until their kinds are
// served.
func (c *Cluster) InstallCRDs(crds []*apiextensionsv1.CustomResourceDefinition, paths ...string) ([]*apiextensionsv1.CustomResourceDefinition, error) {
	installed, err := envtest.InstallCRDs(c.Config, envtest.CRDInstallOptions{
		CRDs:               crds,
		Paths:              paths,
		ErrorIfPathMissing: true,
	})
	if err != nil {
		return nil, fmt.Errorf("cluster %s: install CRDs: %w", c.Name, err)
	}
	return installed, nil
}
