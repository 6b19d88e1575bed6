"""The pure domain: what a recording and its files are, key templates, file formats, job states.

Lives here: `recordings` (the one model of every recording kind), `templates` (awsDirPath-style key
templates), `formats` (a file's kind by its declared format), `states` (JobState and flag codes),
`recording_options` (what a start-recording request may ask for: config, file formats, track kinds).
May import: the standard library only. Everything else in `archiver` may import this.
"""
