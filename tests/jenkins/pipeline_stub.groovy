// Runs a declarative Jenkinsfile outside Jenkins, for tests.
//
//   groovy pipeline_stub.groovy parse FILE...  -> syntax check only (no execution): one line
//        "SYNTAX OK FILE" or "SYNTAX ERROR FILE" each; exit status 1 if any has an error
//   groovy pipeline_stub.groovy run FILE STATUS[,STATUS...]  -> for each STATUS, a line
//        "RUN STATUS", then the Jenkinsfile evaluated with every Jenkins step stubbed: each
//        step prints "STEP name args", closures run in order, `sh` gives STATUS, `error`
//        ends that run with "RESULT FAILURE", `unstable` gives "RESULT UNSTABLE", else
//        "RESULT SUCCESS".
// One JVM for several files or statuses: starting Groovy is the slow part.
import org.codehaus.groovy.control.CompilationUnit
import org.codehaus.groovy.control.CompilerConfiguration
import org.codehaus.groovy.control.Phases

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

def mode = args[0]
if (mode == 'parse') {
    def failed = false
    args.drop(1).each { path ->
        def unit = new CompilationUnit()
        unit.addSource(path, new File(path).getText('UTF-8'))
        try {
            unit.compile(Phases.CONVERSION)  // an AST: syntax only, no class resolution
            println "SYNTAX OK ${path}"
        } catch (org.codehaus.groovy.control.CompilationFailedException problem) {
            failed = true
            println "SYNTAX ERROR ${path}"
            System.err.println(problem.message)
        }
    }
    System.exit(failed ? 1 : 0)
}
def text = new File(args[1]).getText('UTF-8')
def config = new CompilerConfiguration()
config.scriptBaseClass = JenkinsStub.name
args[2].split(',').each { status ->
    println "RUN ${status}"
    JenkinsStub.shStatus = status as int
    JenkinsStub.result = 'SUCCESS'
    def shell = new GroovyShell(this.class.classLoader, new Binding(), config)
    try {
        shell.evaluate(text, 'Jenkinsfile')
    } catch (StubError stop) {
        JenkinsStub.result = 'FAILURE'
        println "ERROR ${stop.message}"
    }
    println "RESULT ${JenkinsStub.result}"
}
