"""Jobs: code in a language checked, run or tested in the sandbox, and the status it ends with."""
