package podman

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/containers/podman/v5/pkg/bindings/kube"
	"github.com/containers/podman/v5/pkg/bindings/pods"
	"github.com/containers/podman/v5/pkg/bindings/volumes"
	entitiesTypes "github.com/containers/podman/v5/pkg/domain/entities/types"
)

// PlayedPod is a pod `kube play` created: its name, its infra container and the others.
type PlayedPod struct {
	Name       string
	Infra      string
	Containers []PodContainer
}

// PodContainer is one of a pod's containers.
type PodContainer struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

// PlayKube creates the pods of a Kubernetes manifest without starting them, with no network
// (what the manifest's NetworkPolicy means: kube play applies none). Nothing runs until
// StartPod, so the created containers can be checked first.
func (c *Client) PlayKube(ctx context.Context, manifest []byte) ([]PlayedPod, error) {
	cctx := c.with(ctx) // no deadline of its own: it may pull an image the manifest names
	none, start := []string{"none"}, false
	report, err := kube.PlayWithBody(cctx, bytes.NewReader(manifest), &kube.PlayOptions{Network: &none, Start: &start})
	if err != nil {
		return nil, fmt.Errorf("kube play: %w", err)
	}
	var played []PlayedPod
	for _, p := range report.Pods {
		info, err := c.inspectPod(ctx, p.ID)
		if err != nil {
			return played, err
		}
		played = append(played, info)
	}
	if len(played) == 0 {
		return nil, errors.New("kube play created no pod")
	}
	return played, nil
}

func (c *Client) inspectPod(ctx context.Context, id string) (PlayedPod, error) {
	cctx, cancel := c.call(ctx, callTimeout)
	defer cancel()
	r, err := pods.Inspect(cctx, id, nil)
	if err != nil || r.InspectPodData == nil {
		return PlayedPod{}, fmt.Errorf("inspect pod %s: %w", short(id), err)
	}
	p := PlayedPod{Name: r.Name, Infra: r.InfraContainerID}
	for _, ctr := range r.Containers {
		if ctr.ID != r.InfraContainerID {
			p.Containers = append(p.Containers, PodContainer{ID: ctr.ID, Name: ctr.Name})
		}
	}
	return p, nil
}

// StartPod starts a created pod's containers.
func (c *Client) StartPod(ctx context.Context, name string) error {
	cctx, cancel := c.call(ctx, callTimeout)
	defer cancel()
	if _, err := pods.Start(cctx, name, nil); err != nil {
		return fmt.Errorf("start pod %s: %w", name, err)
	}
	return nil
}

// RemovePod removes a pod and its containers, running or not.
func (c *Client) RemovePod(ctx context.Context, name string) error {
	cctx, cancel := c.cleanup(ctx)
	defer cancel()
	force := true
	if _, err := pods.Remove(cctx, name, &pods.RemoveOptions{Force: &force}); err != nil {
		return fmt.Errorf("remove pod %s: %w", name, err)
	}
	return nil
}

// CreateTmpfsVolume creates a memory-backed volume of at most size bytes, owned by uid:gid
// with mode 0700: what a pod's emptyDir of medium Memory is on a cluster (Podman 4.3's kube
// play would make a directory on disk owned by root of it, which the pod's user cannot write).
// Podman 4.3 takes a size option for a disk quota only and refuses it; there the volume has
// no size of its own, and its pages count against the container's memory limit.
func (c *Client) CreateTmpfsVolume(ctx context.Context, name string, size int64, uid, gid int64, labels map[string]string) error {
	cctx, cancel := c.call(ctx, callTimeout)
	defer cancel()
	o := fmt.Sprintf("uid=%d,gid=%d,mode=0700,nosuid,nodev", uid, gid)
	create := func(o string) error {
		_, err := volumes.Create(cctx, entitiesTypes.VolumeCreateOptions{Name: name, Driver: "local", Labels: labels,
			Options: map[string]string{"type": "tmpfs", "device": "tmpfs", "o": o}}, nil)
		return err
	}
	err := create(fmt.Sprintf("size=%d,%s", size, o))
	if err != nil && strings.Contains(err.Error(), "Project Quota") {
		err = create(o)
	}
	if err != nil {
		return fmt.Errorf("create volume %s: %w", name, err)
	}
	return nil
}

// VolumeSource says what a named volume is: its driver and the options it was created with
// (a local volume with a device or a bind option is a host path in disguise).
func (c *Client) VolumeSource(ctx context.Context, name string) (driver string, options map[string]string, err error) {
	cctx, cancel := c.call(ctx, callTimeout)
	defer cancel()
	v, err := volumes.Inspect(cctx, name, nil)
	if err != nil {
		return "", nil, fmt.Errorf("inspect volume %s: %w", name, err)
	}
	return v.Driver, v.Options, nil
}
