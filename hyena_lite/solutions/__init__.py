"""The exercises' solutions, one module per chapter (ch02 ... ch12), out of the notebooks a reader
opens: `hyena_lite.exercises.show_solution(chapter, name)` prints one, and each chapter checks its
own with `checker(hyena_lite.exercises.solution(chapter, name))`."""
