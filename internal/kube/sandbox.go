package kube

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The agent-sandbox Sandbox resource, written from the project's published API reference
// (kubernetes-sigs/agent-sandbox, docs/api.md at commit 01e149d1, group agents.x-k8s.io,
// version v1alpha1). Only the fields an export sets or a reader must accept are here; the
// status is the controller's and never exported. v1beta1 exists there too (operating modes,
// SandboxBlueprint); v1alpha1 is what a released controller serves.
const (
	SandboxAPIVersion = "agents.x-k8s.io/v1alpha1"
	SandboxKind       = "Sandbox"
)

// Sandbox is a singleton, stateful pod managed by the agent-sandbox controller.
type Sandbox struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              SandboxSpec `json:"spec"`
}

// SandboxSpec is the desired state of a Sandbox.
type SandboxSpec struct {
	PodTemplate          PodTemplate                     `json:"podTemplate"`
	VolumeClaimTemplates []PersistentVolumeClaimTemplate `json:"volumeClaimTemplates,omitempty"`
	// ShutdownTime is when the sandbox expires; ShutdownPolicy says whether the Sandbox
	// itself is then deleted (Delete) or kept, expired (Retain, the default).
	ShutdownTime   *metav1.Time    `json:"shutdownTime,omitempty"`
	ShutdownPolicy *ShutdownPolicy `json:"shutdownPolicy,omitempty"`
	// Replicas is 0 or 1 (default 1).
	Replicas *int32 `json:"replicas,omitempty"`
	// Service asks the controller for a headless Service.
	Service *bool `json:"service,omitempty"`
}

// ShutdownPolicy is Delete or Retain.
type ShutdownPolicy string

// PodTemplate is the pod a Sandbox runs.
type PodTemplate struct {
	Spec     corev1.PodSpec `json:"spec"`
	Metadata PodMetadata    `json:"metadata,omitempty"`
}

// PodMetadata is the pod's labels and annotations.
type PodMetadata struct {
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// PersistentVolumeClaimTemplate is a claim the sandbox pod may reference.
type PersistentVolumeClaimTemplate struct {
	Metadata EmbeddedObjectMetadata           `json:"metadata,omitempty"`
	Spec     corev1.PersistentVolumeClaimSpec `json:"spec"`
}

// EmbeddedObjectMetadata is a claim template's metadata.
type EmbeddedObjectMetadata struct {
	Name        string            `json:"name,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}
