// Runs declarative Jenkinsfiles outside Jenkins, for tests.
//
//   groovy pipeline_stub.groovy REQUEST...   where each REQUEST is one of
//     parse FILE  -> syntax check only (no execution): a line "SYNTAX OK FILE" or
//        "SYNTAX ERROR FILE" (the compiler's message on stderr)
//     run FILE STATUS[,STATUS...]  -> FILE compiled once; for each STATUS, a line
//        "RUN STATUS FILE", then a new instance of it run with every Jenkins step stubbed:
//        each step prints "STEP name args", closures run in order, `sh` gives STATUS,
//        `error` ends that run with "RESULT FAILURE", `unstable` gives "RESULT UNSTABLE",
//        else "RESULT SUCCESS". A FILE that does not compile gives "CANNOT COMPILE FILE"
//        instead, a run that throws anything else "CRASH exception" (traces on stderr).
//   Requests are answered in order, each whatever became of the others; the exit status is
//   0 unless the stub itself broke.
// One JVM for all of a test module's files and statuses: starting Groovy is the slow part
// (about 0.7 s of CPU); so is compiling a Jenkinsfile (a tenth of a second), running it is not.
import org.codehaus.groovy.control.CompilationUnit
import org.codehaus.groovy.control.CompilerConfiguration
import org.codehaus.groovy.control.Phases
import org.codehaus.groovy.runtime.InvokerHelper

abstract class JenkinsStub extends Script {
    static String result = 'SUCCESS'
    static int shStatus = 0

    def methodMissing(String name, Object args) {
        Object[] list = (Object[]) args
        def shown = list.findAll { !(it instanceof Closure) }.collect { describe(it) }
        println "STEP ${name} ${shown.join(' ')}"
        if (name == 'sh') {
            return shStatus
        }
        if (name == 'error') {
            throw new StubError(list[0].toString())
        }
        if (name == 'unstable') {
            result = 'UNSTABLE'
        }
        list.findAll { it instanceof Closure }.each { ((Closure) it).call() }
        return [step: name]
    }

    def propertyMissing(String name) {
        if (name == 'env') {
            return [JENKINS_HOME: '/var/jenkins_home', JOB_NAME: 'careen-nightly']
        }
        return name
    }

    static String describe(Object value) {
        if (value instanceof Map) {
            return value.collect { k, v -> "${k}=${describe(v)}" }.join(',')
        }
        if (value instanceof List) {
            return '[' + value.collect { describe(it) }.join(';') + ']'
        }
        return value.toString()
    }
}

class StubError extends RuntimeException {
    StubError(String message) { super(message) }
}

def parse(String path) {
    def unit = new CompilationUnit()
    unit.addSource(path, new File(path).getText('UTF-8'))
    try {
        unit.compile(Phases.CONVERSION)  // an AST: syntax only, no class resolution
        println "SYNTAX OK ${path}"
    } catch (org.codehaus.groovy.control.CompilationFailedException problem) {
        println "SYNTAX ERROR ${path}"
        System.err.println(problem.message)
    }
}

def run(String path, String statuses) {
    def config = new CompilerConfiguration()
    config.scriptBaseClass = JenkinsStub.name
    def shell = new GroovyShell(this.class.classLoader, new Binding(), config)
    def compiled
    try {
        compiled = shell.parse(new File(path).getText('UTF-8'), 'Jenkinsfile').getClass()
    } catch (org.codehaus.groovy.control.CompilationFailedException problem) {
        println "CANNOT COMPILE ${path}"
        System.err.println(problem.message)
        return
    }
    statuses.split(',').each { status ->
        println "RUN ${status} ${path}"
        JenkinsStub.shStatus = status as int
        JenkinsStub.result = 'SUCCESS'
        try {
            InvokerHelper.createScript(compiled, new Binding()).run()
            println "RESULT ${JenkinsStub.result}"
        } catch (StubError stop) {
            println "ERROR ${stop.message}"
            println "RESULT FAILURE"
        } catch (Exception crash) {  // the run's own failure; the other requests go on
            println "CRASH ${crash}"
            crash.printStackTrace()
        }
    }
}

def next = 0
while (next < args.length) {
    def mode = args[next]
    if (mode == 'parse') {
        parse(args[next + 1])
        next += 2
    } else if (mode == 'run') {
        run(args[next + 1], args[next + 2])
        next += 3
    } else {
        throw new IllegalArgumentException("unknown request ${mode}")
    }
}
