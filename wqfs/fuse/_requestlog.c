/* libfuse's request log, read without a call into Python per line (see requests.py).
 *
 * libfuse (with the `debug` mount option) logs two lines per FUSE request: the request
 * ("unique: U, opcode: NAME (N), nodeid: I, insize: S, pid: P") right before its handler
 * starts, and its reply. wqfs needs the request line's unique id, opcode and pid (the caller
 * of read and write, and the id that a FUSE_INTERRUPT names) and the "INTERRUPT: U" line.
 * This log function keeps the last request line's three numbers in static storage, calls
 * into Python only for an interrupt, drops every other line at once, and hands a line whose
 * format it does not know word for word, but whose start it does, to a Python fallback.
 * Only lines of the thread bound with bind_thread() count, as in requests.py.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <dlfcn.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <string.h>

typedef void (*log_func_t)(int level, const char *fmt, va_list ap);
typedef void (*set_log_func_t)(log_func_t func);

static const char REQUEST_FORMAT[] =
    "unique: %llu, opcode: %s (%i), nodeid: %llu, insize: %zu, pid: %u\n";
static const char REQUEST_PREFIX[] = "unique: %llu, opcode:";
static const char INTERRUPT_FORMAT[] = "INTERRUPT: %llu\n";
static const char INTERRUPT_PREFIX[] = "INTERRUPT: %llu";

static PyObject *on_interrupt;  /* f(unique) */
static PyObject *fallback;      /* f(level, fmt address, va_list address) */
static pthread_t loop_thread;
static int bound;

static unsigned long long current_unique;
static int current_opcode;
static unsigned int current_pid;
static int current_valid;

static void call_python(PyObject *func, PyObject *args)
{
    if (func == NULL || args == NULL) {
        Py_XDECREF(args);
        return;
    }
    PyObject *result = PyObject_CallObject(func, args);
    Py_DECREF(args);
    if (result == NULL)
        PyErr_WriteUnraisable(func);  /* never let a log line end the daemon */
    Py_XDECREF(result);
}

static void log_line(int level, const char *fmt, va_list ap)
{
    if (fmt == NULL || !bound || !pthread_equal(pthread_self(), loop_thread))
        return;
    if (fmt[0] == 'u' && strcmp(fmt, REQUEST_FORMAT) == 0) {
        va_list args;
        va_copy(args, ap);
        current_unique = va_arg(args, unsigned long long);
        (void)va_arg(args, const char *);          /* the opcode's name */
        current_opcode = va_arg(args, int);
        (void)va_arg(args, unsigned long long);    /* nodeid */
        (void)va_arg(args, size_t);                /* insize */
        current_pid = va_arg(args, unsigned int);
        current_valid = 1;
        va_end(args);
        return;
    }
    if (fmt[0] == 'I' && strcmp(fmt, INTERRUPT_FORMAT) == 0) {
        va_list args;
        va_copy(args, ap);
        unsigned long long unique = va_arg(args, unsigned long long);
        va_end(args);
        PyGILState_STATE state = PyGILState_Ensure();
        call_python(on_interrupt, Py_BuildValue("(K)", unique));
        PyGILState_Release(state);
        return;
    }
    if (strncmp(fmt, REQUEST_PREFIX, sizeof REQUEST_PREFIX - 1) == 0
            || strncmp(fmt, INTERRUPT_PREFIX, sizeof INTERRUPT_PREFIX - 1) == 0) {
        /* another libfuse's wording: Python formats it (vsnprintf) and reads what it can. It
         * gets the address of a copy of the va_list, which is how a va_list argument is passed
         * on x86-64 (an array) and on aarch64 (a struct of more than 16 bytes) alike. */
        va_list copy;
        va_copy(copy, ap);
        PyGILState_STATE state = PyGILState_Ensure();
        call_python(fallback, Py_BuildValue("(iKK)", level, (unsigned long long)(uintptr_t)fmt,
                                            (unsigned long long)(uintptr_t)&copy));
        PyGILState_Release(state);
        va_end(copy);
    }
}

static PyObject *install(PyObject *self, PyObject *args)
{
    PyObject *interrupt_callback, *fallback_callback;
    if (!PyArg_ParseTuple(args, "OO", &interrupt_callback, &fallback_callback))
        return NULL;
    void *libfuse = dlopen("libfuse3.so.3", RTLD_NOW);
    set_log_func_t set_log = libfuse ? (set_log_func_t)dlsym(libfuse, "fuse_set_log_func") : NULL;
    if (set_log == NULL)
        Py_RETURN_FALSE;  /* libfuse before 3.7 has no fuse_set_log_func */
    Py_INCREF(interrupt_callback);
    Py_INCREF(fallback_callback);
    Py_XSETREF(on_interrupt, interrupt_callback);
    Py_XSETREF(fallback, fallback_callback);
    loop_thread = pthread_self();
    bound = 1;
    set_log(log_line);
    Py_RETURN_TRUE;
}

static PyObject *bind_thread(PyObject *self, PyObject *unused)
{
    loop_thread = pthread_self();
    bound = 1;
    Py_RETURN_NONE;
}

static PyObject *current_tuple(void)
{
    return Py_BuildValue("(KiI)", current_unique, current_opcode, current_pid);
}

static PyObject *take(PyObject *self, PyObject *unused)
{
    if (!current_valid)
        Py_RETURN_NONE;
    current_valid = 0;
    return current_tuple();
}

static PyObject *peek(PyObject *self, PyObject *unused)
{
    if (!current_valid)
        Py_RETURN_NONE;
    return current_tuple();
}

static PyObject *set_current(PyObject *self, PyObject *args)
{
    unsigned long long unique;
    int opcode;
    unsigned int pid;
    if (!PyArg_ParseTuple(args, "KiI", &unique, &opcode, &pid))
        return NULL;
    current_unique = unique;
    current_opcode = opcode;
    current_pid = pid;
    current_valid = 1;
    Py_RETURN_NONE;
}

static PyObject *log_function(PyObject *self, PyObject *unused)
{
    return PyLong_FromVoidPtr((void *)log_line);  /* for tests: the function libfuse calls */
}

static PyMethodDef methods[] = {
    {"install", install, METH_VARARGS,
     "install(on_interrupt, fallback): make this libfuse's log function; False without fuse_set_log_func."},
    {"bind_thread", bind_thread, METH_NOARGS, "Only lines logged by the calling thread count from now on."},
    {"take", take, METH_NOARGS, "The last request line's (unique, opcode, pid), once; else None."},
    {"peek", peek, METH_NOARGS, "The last request line's (unique, opcode, pid), left for take(); else None."},
    {"set_current", set_current, METH_VARARGS, "set_current(unique, opcode, pid): what the fallback read."},
    {"log_function", log_function, METH_NOARGS, "The address of the log function (for tests)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "wqfs.fuse._requestlog",
    "libfuse's request log, read in C (wqfs/fuse/requests.py falls back to ctypes without it).",
    -1, methods,
};

PyMODINIT_FUNC PyInit__requestlog(void)
{
    return PyModule_Create(&module);
}
