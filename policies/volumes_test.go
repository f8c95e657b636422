package policies

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestCopiesData(t *testing.T) {
	backup := &metav1.LabelSelector{MatchLabels: map[string]string{"backup": "true"}}
	tests := []struct {
		name    string
		volumes Volumes
		labels  map[string]string
		want    bool
	}{
		{name: "every claim by default", labels: nil, want: true},
		{name: "opted out by label", labels: map[string]string{VolumeSyncLabel: "false"}, want: false},
		{name: "stage disabled", volumes: Volumes{Disabled: true}, want: false},
		{name: "selector matches", volumes: Volumes{Selector: backup}, labels: map[string]string{"backup": "true"}, want: true},
		{name: "selector does not match", volumes: Volumes{Selector: backup}, labels: map[string]string{"backup": "no"}, want: false},
		{name: "label wins over selector", volumes: Volumes{Selector: backup}, labels: map[string]string{"backup": "true", VolumeSyncLabel: "false"}, want: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := &SyncConfig{Spec: Spec{Volumes: tc.volumes}}
			if got := c.CopiesData(tc.labels); got != tc.want {
				t.Errorf("CopiesData(%v) = %v, want %v", tc.labels, got, tc.want)
			}
		})
	}
}

func TestVolumeDefaults(t *testing.T) {
	var c SyncConfig
	if c.VolumeConcurrency() != DefaultVolumeConcurrency || c.VolumeRetries() != DefaultVolumeRetries ||
		c.AgentPort() != DefaultAgentPort || c.AgentAddress() != AgentAddressNodeIP || c.UnmountedPolicy() != UnmountedSkip {
		t.Errorf("defaults: concurrency %d, retries %d, port %d, address %s, unmounted %s",
			c.VolumeConcurrency(), c.VolumeRetries(), c.AgentPort(), c.AgentAddress(), c.UnmountedPolicy())
	}
	zero := 0
	c.Spec.Volumes.Retries = &zero
	if c.VolumeRetries() != 0 {
		t.Errorf("retries: 0 must mean no retry, got %d", c.VolumeRetries())
	}
	if !c.VolumeSparse() {
		t.Error("sparse: unset must mean on")
	}
	off := false
	c.Spec.Volumes.Sparse = &off
	if c.VolumeSparse() {
		t.Error("sparse: false must turn it off")
	}
}
