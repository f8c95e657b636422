package testcluster

import (
	"fmt"
)

// StopAPIServer stops the cluster's kube-apiserver and leaves its etcd
// running: clients get connection errors until StartAPIServer, and every
// object survives. Use it to test an outage of a cluster.
func (c *Cluster) StopAPIServer() error {
	if err := c.env.ControlPlane.APIServer.Stop(); err != nil {
		return fmt.Errorf("cluster %s: stop kube-apiserver: %w", c.Name, err)
	}
	return nil
}

// StartAPIServer starts the kube-apiserver that StopAPIServer stopped, on
// the same address, with the same certificates and the same etcd, so that
// Config, Kubeconfig and the clients keep working, and waits until it is
// healthy.
func (c *Cluster) StartAPIServer() error {
	if err := c.env.ControlPlane.APIServer.Start(); err != nil {
		return fmt.Errorf("cluster %s: start kube-apiserver: %w%s", c.Name, err, c.logTails())
	}
	return nil
}
