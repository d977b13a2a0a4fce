package kubernetes

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// The image the Jobs run: the README says to replace VERSION (and the
// registry) with where `make image`'s layout was pushed.
const image = "registry.example.com/tools/regvault:VERSION"

// The user of the image (cmd/regvault-image: nonroot).
const imageUser = 65532

// manifests is every object of the *.yaml files of this directory.
type manifests struct {
	jobs       map[string]*batchv1.Job
	configMaps map[string]*corev1.ConfigMap
	secrets    map[string]*corev1.Secret
	pvcs       map[string]*corev1.PersistentVolumeClaim
}

// decodeStrict decodes one YAML document into v as the API server would
// refuse it: an unknown or misspelt field, or a key given twice, is an
// error.
func decodeStrict(doc []byte, v any) error {
	j, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(j))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return fmt.Errorf("trailing data after the object")
	}
	return nil
}

// documents splits a YAML file at its "---" lines, dropping documents that
// hold only comments.
func documents(data []byte) [][]byte {
	var docs [][]byte
	for _, d := range regexp.MustCompile(`(?m)^---[ \t]*$`).Split(string(data), -1) {
		empty := true
		for _, l := range strings.Split(d, "\n") {
			if t := strings.TrimSpace(l); t != "" && !strings.HasPrefix(t, "#") {
				empty = false
			}
		}
		if !empty {
			docs = append(docs, []byte(d))
		}
	}
	return docs
}

func load(t *testing.T) manifests {
	t.Helper()
	files, err := filepath.Glob("*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	yml, _ := filepath.Glob("*.yml")
	if len(yml) > 0 {
		t.Fatalf("%v: name manifests *.yaml so this test reads them", yml)
	}
	m := manifests{map[string]*batchv1.Job{}, map[string]*corev1.ConfigMap{}, map[string]*corev1.Secret{}, map[string]*corev1.PersistentVolumeClaim{}}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range documents(data) {
			var tm metav1.TypeMeta
			if err := yaml.Unmarshal(doc, &tm); err != nil {
				t.Fatalf("%s, document %d: %v", f, i+1, err)
			}
			var obj interface{ GetName() string }
			switch tm.APIVersion + " " + tm.Kind {
			case "batch/v1 Job":
				obj = &batchv1.Job{}
			case "v1 ConfigMap":
				obj = &corev1.ConfigMap{}
			case "v1 Secret":
				obj = &corev1.Secret{}
			case "v1 PersistentVolumeClaim":
				obj = &corev1.PersistentVolumeClaim{}
			default:
				t.Fatalf("%s, document %d: %s %s: this test knows no such kind; teach it", f, i+1, tm.APIVersion, tm.Kind)
			}
			if err := decodeStrict(doc, obj); err != nil {
				t.Fatalf("%s, document %d (%s): %v", f, i+1, tm.Kind, err)
			}
			name := obj.GetName()
			if name == "" {
				t.Fatalf("%s, document %d: %s without a name", f, i+1, tm.Kind)
			}
			dup := false
			switch o := obj.(type) {
			case *batchv1.Job:
				_, dup = m.jobs[name]
				m.jobs[name] = o
			case *corev1.ConfigMap:
				_, dup = m.configMaps[name]
				m.configMaps[name] = o
			case *corev1.Secret:
				_, dup = m.secrets[name]
				m.secrets[name] = o
			case *corev1.PersistentVolumeClaim:
				_, dup = m.pvcs[name]
				m.pvcs[name] = o
			}
			if dup {
				t.Fatalf("%s: %s %q defined twice", f, tm.Kind, name)
			}
		}
	}
	return m
}

// TestStrictDecoding: the decoder the manifests go through refuses what
// the API server refuses, so that their passing means something.
func TestStrictDecoding(t *testing.T) {
	for _, doc := range []string{
		"apiVersion: batch/v1\nkind: Job\nmetadata: {name: x}\nspec:\n  completion: 4\n",                    // misspelt
		"apiVersion: batch/v1\nkind: Job\nmetadata: {name: x}\nspec:\n  completions: 4\n  completions: 5\n", // twice
		"apiVersion: batch/v1\nkind: Job\nmetadata: {name: x}\nspec:\n  completions: four\n",                // wrong type
	} {
		if err := decodeStrict([]byte(doc), &batchv1.Job{}); err == nil {
			t.Errorf("decoded without error:\n%s", doc)
		}
	}
	if err := decodeStrict([]byte("apiVersion: batch/v1\nkind: Job\nmetadata: {name: x}\nspec:\n  completions: 4\n"), &batchv1.Job{}); err != nil {
		t.Errorf("a valid Job: %v", err)
	}
}

// TestManifests decodes every manifest strictly into its Kubernetes API
// type and checks what the sharded runs depend on.
func TestManifests(t *testing.T) {
	m := load(t)
	for _, want := range []string{"regvault-copy", "regvault-backup"} {
		if m.jobs[want] == nil {
			t.Errorf("no Job %q", want)
		}
	}
	for name, job := range m.jobs {
		t.Run(name, func(t *testing.T) { checkJob(t, m, job) })
	}
}

func checkJob(t *testing.T, m manifests, job *batchv1.Job) {
	s := job.Spec
	if s.CompletionMode == nil || *s.CompletionMode != batchv1.IndexedCompletion {
		t.Errorf("completionMode %v, want Indexed (each pod gets JOB_COMPLETION_INDEX)", s.CompletionMode)
	}
	if s.Completions == nil || s.Parallelism == nil || *s.Completions != *s.Parallelism || *s.Completions < 1 {
		t.Fatalf("completions %v, parallelism %v: want them equal (one pod per shard, all at once)", s.Completions, s.Parallelism)
	}
	n := int(*s.Completions)
	if s.BackoffLimitPerIndex == nil || *s.BackoffLimitPerIndex < 1 {
		t.Errorf("backoffLimitPerIndex %v: want retries per shard", s.BackoffLimitPerIndex)
	}
	pod := s.Template.Spec
	if pod.RestartPolicy != corev1.RestartPolicyNever {
		t.Errorf("restartPolicy %q: backoffLimitPerIndex needs Never", pod.RestartPolicy)
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(pod.Containers))
	}
	c := pod.Containers[0]
	if c.Image != image {
		t.Errorf("image %q, want %q (README.md names it)", c.Image, image)
	}
	if p := s.PodFailurePolicy; p != nil {
		for _, r := range p.Rules {
			if r.OnExitCodes != nil && r.OnExitCodes.ContainerName != nil && *r.OnExitCodes.ContainerName != c.Name {
				t.Errorf("podFailurePolicy names container %q, the pod has %q", *r.OnExitCodes.ContainerName, c.Name)
			}
		}
	}

	// The arguments: the command, the plan, the shard from the index.
	if len(c.Args) == 0 || (c.Args[0] != "copy" && c.Args[0] != "backup") {
		t.Fatalf("args %q: want regvault copy or backup", c.Args)
	}
	if got, want := flagValue(t, c.Args, "--shard"), "auto/"+strconv.Itoa(n); got != want {
		t.Errorf("--shard %q, want %q: the pod's index from JOB_COMPLETION_INDEX, N = completions (%d)", got, want, n)
	}
	env := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		env[e.Name] = e
	}
	if e, ok := env["JOB_COMPLETION_INDEX"]; !ok || e.ValueFrom == nil || e.ValueFrom.FieldRef == nil ||
		e.ValueFrom.FieldRef.FieldPath != "metadata.annotations['batch.kubernetes.io/job-completion-index']" {
		t.Errorf("JOB_COMPLETION_INDEX %+v: want it from the job-completion-index annotation", e)
	}
	mounts := map[string]corev1.VolumeMount{}
	for _, vm := range c.VolumeMounts {
		mounts[vm.Name] = vm
	}
	volumes := map[string]corev1.Volume{}
	for _, v := range pod.Volumes {
		volumes[v.Name] = v
		if _, ok := mounts[v.Name]; !ok {
			t.Errorf("volume %q is not mounted", v.Name)
		}
	}
	// mountOf is the volume mounted at the directory holding path.
	mountOf := func(path string) (corev1.VolumeMount, corev1.Volume, bool) {
		for _, vm := range c.VolumeMounts {
			if filepath.Dir(path) == filepath.Clean(vm.MountPath) {
				return vm, volumes[vm.Name], true
			}
		}
		return corev1.VolumeMount{}, corev1.Volume{}, false
	}
	for _, vm := range c.VolumeMounts {
		if _, ok := volumes[vm.Name]; !ok {
			t.Errorf("mount of an undefined volume %q", vm.Name)
		}
	}

	plan := flagValue(t, c.Args, "--plan")
	if vm, v, ok := mountOf(plan); !ok || v.ConfigMap == nil || !vm.ReadOnly {
		t.Errorf("--plan %s: not in a read-only ConfigMap volume", plan)
	} else if cm := m.configMaps[v.ConfigMap.Name]; cm == nil {
		t.Errorf("ConfigMap %q of the plan is not among the manifests", v.ConfigMap.Name)
	} else if _, ok := cm.Data[filepath.Base(plan)]; !ok {
		t.Errorf("ConfigMap %q has no key %q", cm.Name, filepath.Base(plan))
	}

	// Credentials: a Docker config from a Secret, found by DOCKER_CONFIG.
	dc := env["DOCKER_CONFIG"].Value
	if vm, v, ok := mountOf(filepath.Join(dc, "config.json")); !ok || v.Secret == nil || !vm.ReadOnly {
		t.Errorf("DOCKER_CONFIG %q: no read-only Secret volume mounted there", dc)
	} else {
		sec := m.secrets[v.Secret.SecretName]
		if sec == nil {
			t.Fatalf("Secret %q is not among the manifests", v.Secret.SecretName)
		}
		if sec.Type != corev1.SecretTypeDockerConfigJson {
			t.Errorf("Secret %q type %q, want %q", sec.Name, sec.Type, corev1.SecretTypeDockerConfigJson)
		}
		if !slices.Equal(v.Secret.Items, []corev1.KeyToPath{{Key: corev1.DockerConfigJsonKey, Path: "config.json"}}) {
			t.Errorf("Secret volume items %+v: want %s as config.json", v.Secret.Items, corev1.DockerConfigJsonKey)
		}
		var cfg struct {
			Auths map[string]json.RawMessage `json:"auths"`
		}
		if err := json.Unmarshal([]byte(sec.StringData[corev1.DockerConfigJsonKey]), &cfg); err != nil || cfg.Auths == nil {
			t.Errorf("Secret %q: %s is not a Docker config with auths: %v", sec.Name, corev1.DockerConfigJsonKey, err)
		}
	}

	if c.Args[0] == "backup" {
		out := flagValue(t, c.Args, "-o")
		if want := "-of-" + strconv.Itoa(n) + "."; !strings.Contains(out, "$(JOB_COMPLETION_INDEX)") || !strings.Contains(out, want) {
			t.Errorf("-o %q: want one archive per index, named with $(JOB_COMPLETION_INDEX) and %q", out, want)
		}
		if vm, v, ok := mountOf(out); !ok || v.PersistentVolumeClaim == nil || vm.ReadOnly {
			t.Errorf("-o %s: not on a writable PersistentVolumeClaim", out)
		} else if pvc := m.pvcs[v.PersistentVolumeClaim.ClaimName]; pvc == nil {
			t.Errorf("PersistentVolumeClaim %q is not among the manifests", v.PersistentVolumeClaim.ClaimName)
		} else if !slices.Contains(pvc.Spec.AccessModes, corev1.ReadWriteMany) && n > 1 {
			t.Errorf("PersistentVolumeClaim %q is not ReadWriteMany: %d pods on several nodes write to it", pvc.Name, n)
		}
	} else if last := c.Args[len(c.Args)-1]; strings.HasPrefix(last, "-") || last == plan {
		t.Errorf("copy's last argument %q: want the target", last)
	}

	// Non-root with a read-only root file system, a writable /tmp.
	ps := pod.SecurityContext
	if ps == nil || ps.RunAsNonRoot == nil || !*ps.RunAsNonRoot || ps.RunAsUser == nil || *ps.RunAsUser != imageUser {
		t.Errorf("pod securityContext %+v: want runAsNonRoot and runAsUser %d", ps, imageUser)
	}
	cs := c.SecurityContext
	if cs == nil || cs.ReadOnlyRootFilesystem == nil || !*cs.ReadOnlyRootFilesystem ||
		cs.AllowPrivilegeEscalation == nil || *cs.AllowPrivilegeEscalation || cs.Capabilities == nil ||
		!slices.Equal(cs.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Errorf("container securityContext %+v: want a read-only root, no privilege escalation, all capabilities dropped", cs)
	}
	if vm, v, ok := mountOf("/tmp/x"); !ok || v.EmptyDir == nil || vm.ReadOnly || env["TMPDIR"].Value != "/tmp" {
		t.Errorf("no writable emptyDir at /tmp (TMPDIR) for spooling under a read-only root")
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Errorf("resources %+v: want cpu and memory requests and a memory limit", c.Resources)
	}
}

// flagValue is the value of a flag in args, given as "--f v" or "--f=v",
// exactly once.
func flagValue(t *testing.T, args []string, name string) string {
	t.Helper()
	var vals []string
	for i, a := range args {
		if a == name && i+1 < len(args) {
			vals = append(vals, args[i+1])
		} else if v, ok := strings.CutPrefix(a, name+"="); ok {
			vals = append(vals, v)
		}
	}
	if len(vals) != 1 {
		t.Fatalf("args %q: %s given %d times, want once", args, name, len(vals))
	}
	return vals[0]
}
