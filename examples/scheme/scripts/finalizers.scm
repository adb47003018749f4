; Script finalizers, with Go's semantics (fing's set_finalizer): a finalizer runs after
; a collection finds its object unreachable, on the finalizer thread, with the object
; (resurrected) as its argument; when A points to B, A's runs first and B's only in a
; later cycle; a finalizer can store its object and so resurrect it; and Go's checks
; come back as errors with fing's messages.

; 1. An object whose finalizer prints.
(define obj (cons "resource" 1))
(set-finalizer! obj (lambda (x) (display "finalized: ") (display x) (newline)))
(set! obj #f)
(collect)

; 2. A points to B, both with finalizers.
(define b (list "B"))
(define a (cons "A" b))
(set-finalizer! a (lambda (x) (print "finalizer of A, B still reachable: " (cdr x))))
(set-finalizer! b (lambda (x) (print "finalizer of B")))
(set! a #f)
(set! b #f)
(collect)
(print "after one collection")
(collect)
(print "after two collections")

; 3. Resurrection: the finalizer stores its object in a global.
(define saved #f)
(define phoenix (list "phoenix"))
(set-finalizer! phoenix (lambda (x) (set! saved x)))
(set! phoenix #f)
(collect)
(print "resurrected: " saved)

; 4. What bad calls return: fing's errors, caught.
(define (report msg) (print "error: " msg))
(define twice (cons 1 2))
(set-finalizer! twice (lambda (x) #t))
(catch-error (lambda () (set-finalizer! twice (lambda (x) #t))) report)
(catch-error (lambda () (set-finalizer! 42 (lambda (x) #t))) report)
(catch-error (lambda () (set-finalizer! '() (lambda (x) #t))) report)
(catch-error (lambda () (set-finalizer! (cons 1 2) (lambda (x y) #t))) report)
(catch-error (lambda () (set-finalizer! (cons 1 2) "not a procedure")) report)
