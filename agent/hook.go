package agent

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"time"
)

// hookTimeout bounds how long a hook may run.
const hookTimeout = 10 * time.Minute

// maxHookOutput is how much of a failed hook's output the error keeps.
const maxHookOutput = 2 << 10

// runHook runs the image's hook with sh -c after an update. Its environment
// adds SKIFF_IMAGE (the logical name), SKIFF_REF, SKIFF_CONFIG_DIGEST (the
// new image ID), SKIFF_MANIFEST_DIGEST and SKIFF_PREVIOUS_DIGEST.
// After a health-checked rollback it runs again for the image rolled back
// to, with SKIFF_ROLLBACK=1 among extra.
func runHook(ctx context.Context, im *ImageConfig, previous string, target Current, extra ...string) error {
	if im.Hook == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, hookTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", im.Hook)
	cmd.Env = append(append(os.Environ(), hookEnv(im, previous, target)...), extra...)
	out := &capBuffer{max: 64 << 10}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Run(); err != nil {
		b := bytes.TrimSpace(out.Bytes())
		if len(b) > maxHookOutput {
			b = b[len(b)-maxHookOutput:]
		}
		return fmt.Errorf("%w: %q: %v: %s", ErrHook, im.Hook, err, b)
	}
	return nil
}

// hookEnv is what the hook and the health check see of the update.
func hookEnv(im *ImageConfig, previous string, target Current) []string {
	return []string{
		"SKIFF_IMAGE=" + im.Name,
		"SKIFF_REF=" + im.Ref,
		"SKIFF_CONFIG_DIGEST=" + target.ConfigDigest,
		"SKIFF_MANIFEST_DIGEST=" + target.ManifestDigest,
		"SKIFF_PREVIOUS_DIGEST=" + previous,
	}
}

// capBuffer keeps the first max bytes written to it and drops the rest, so
// a chatty hook cannot fill the device's memory.
type capBuffer struct {
	bytes.Buffer
	max int
}

func (c *capBuffer) Write(p []byte) (int, error) {
	if room := c.max - c.Len(); room > 0 {
		c.Buffer.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}
