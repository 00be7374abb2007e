package compile

// Patches returns how many peer sets the Compiler has patched from the
// parts that changed instead of merging all their parts.
func (c *Compiler) Patches() int { return c.patches }

// CachedParts returns how many parts of peer sets the Compiler keeps.
func (c *Compiler) CachedParts() int { return len(c.parts) }
